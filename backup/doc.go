// Package backup writes, lists, verifies, prunes and reads backups.
package backup
