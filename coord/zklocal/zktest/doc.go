// Package zktest starts a real ZooKeeper (coord/zklocal) for one test: it
// skips the test when ZooKeeper is not installed (outside CI) and stops the
// server at cleanup. It is a package of its own so that only tests link
// the testing package.
package zktest
