// Package tlsauth holds the credentials of mutual TLS between ThunderYurts
// processes: the certificate, key and CA files a process is given, reloaded
// without a restart (Reload on SIGHUP, and Watch for changed files), the
// tls.Config each side of a connection uses, the roles a certificate
// grants, and the making of a CA and of certificates for each role
// (`thunderctl admin certs`).
//
// A certificate's roles are the Organizational Units (OU) of its subject:
// "node" (data nodes and coordinators: replication and migration streams),
// "client" (get, put, del, scan) and "admin" (handover, backups and every
// admin command that calls nodes). A certificate may carry several.
// docs/security.md says what each RPC needs.
//
// Key material never leaves this package other than inside a tls.Config:
// errors name files, never their contents.
package tlsauth
