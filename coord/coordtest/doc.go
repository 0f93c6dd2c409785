// Package coordtest is the conformance suite every coord.Conn
// implementation passes: each Conn method, compare-and-set conflicts,
// watches, ephemeral nodes ending with their session, faults (an expired
// session, an unreachable service), leader election, KeepEphemeral and the
// Cluster domain helpers under concurrent writers. Run it from the
// implementation's tests:
//
//	func TestConformance(t *testing.T) {
//		srv := memcoord.New()
//		coordtest.Run(t, func(t *testing.T) coord.Conn {
//			c := srv.Connect()
//			t.Cleanup(func() { c.Close() })
//			return c
//		}, memFaults{})
//	}
//
// Subtests run in parallel and each works under its own path and cluster
// name, so one server serves the whole suite.
package coordtest
