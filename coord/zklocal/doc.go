// Package zklocal runs a real, single-node ZooKeeper from the local install
// (Options.Install, else $ZOOKEEPER_HOME, else the Debian package zookeeper:
// /usr/share/java/zookeeper.jar; started with the java on PATH) on a
// loopback port, for tests, integration tests and
// `thunderctl dev`. The server's data, config (zoo.cfg) and output
// (zookeeper.log) live in one directory; the process is killed if ours dies.
//
//	srv, err := zklocal.Start(ctx, zklocal.Options{Dir: dir})
//	if err != nil {
//		return err // errors.Is(err, zklocal.ErrNotInstalled): run `make deps`
//	}
//	defer srv.Stop()
//	conn, err := zkcoord.Dial(ctx, srv.Addr(), zkcoord.Options{})
//
// In tests, zktest.Start does the same, skips when ZooKeeper is not
// installed (outside CI) and stops the server at cleanup.
package zklocal
