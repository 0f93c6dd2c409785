// Package wire is the ThunderYurts wire protocol: the protobuf messages and
// dRPC services that clients, data nodes and coordinators exchange, and the
// one table that maps error codes on the wire to typed Go errors.
//
// The data path is the long-lived Data.Stream call: a client sends every
// request it has queued for a node as one Batch and matches the batched
// replies back by request id, so many requests share each round trip.
// Coordinators serve Route.GetRoutes, the slot table plus each group's
// primary address.
//
// Every connection is made with Dial and served with Serve, which bound what
// one peer can make a server hold: connections per listener, frame and
// message sizes, and how long a peer may stay silent or half-way through a
// frame (docs/operations.md, "Connection bounds"). Given a TLS config
// (DialOptions.TLS, ServerOptions.TLS, made by wire/tlsauth) they speak
// mutual TLS, and a TLS listener lets each call through only when the
// peer's certificate carries a role its RPC needs (auth.go,
// docs/security.md); a refusal is the PERMISSION_DENIED code.
//
// thunder.pb.go, thunder_vtproto.pb.go and thunder_drpc.pb.go are
// generated from thunder.proto by `make proto`; do not edit them. The dRPC
// code encodes messages through wirecodec, which uses vtprotobuf's
// generated marshal and unmarshal methods (thunder_vtproto.pb.go): a
// replication message of 64 entries is encoded and decoded in a little over
// half the time google.golang.org/protobuf's reflection-driven code takes
// (BenchmarkEntries in wire/wirecodec). encoding.go adds the MarshalAppend
// that lets dRPC encode into each stream's reused send buffer.
package wire
