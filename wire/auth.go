package wire

import (
	"fmt"
	"slices"
	"strings"

	"storj.io/drpc"
	"storj.io/drpc/drpcctx"

	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// anyRole marks an RPC any certificate the CA signed may call.
var anyRole []tlsauth.Role

// rpcRoles is the role each RPC needs on a TLS listener: one of those
// listed (anyRole: any valid certificate). An RPC missing here is refused
// to everyone, so a new RPC is closed until it is given its roles.
// docs/security.md documents this table.
var rpcRoles = map[string][]tlsauth.Role{
	"/thunderyurts.wire.Data/Stream":    {tlsauth.RoleClient, tlsauth.RoleAdmin, tlsauth.RoleNode},
	"/thunderyurts.wire.Data/Scan":      {tlsauth.RoleClient, tlsauth.RoleAdmin, tlsauth.RoleNode},
	"/thunderyurts.wire.Data/Status":    anyRole,
	"/thunderyurts.wire.Data/Replicate": {tlsauth.RoleNode},
	"/thunderyurts.wire.Data/Migrate":   {tlsauth.RoleNode},
	// A node hands over on shutdown in-process; only operators call it.
	"/thunderyurts.wire.Data/Handover": {tlsauth.RoleAdmin},
	// Backups: `admin backup run`, and the leading coordinator's schedule.
	"/thunderyurts.wire.Data/Dump": {tlsauth.RoleAdmin, tlsauth.RoleNode},
	// A restore's bulk writes: `admin restore` only.
	"/thunderyurts.wire.Data/Load":       {tlsauth.RoleAdmin},
	"/thunderyurts.wire.Route/GetRoutes": anyRole,
}

// authorize wraps a TLS listener's handler: each call runs only when the
// peer's certificate carries a role its RPC needs, and is refused with
// PERMISSION_DENIED otherwise.
func authorize(h drpc.Handler) drpc.Handler { return authorizer{h} }

type authorizer struct{ next drpc.Handler }

func (a authorizer) HandleRPC(stream drpc.Stream, rpc string) error {
	roles, err := peerRoles(stream)
	if err != nil {
		return Errorf(Code_PERMISSION_DENIED, "%s: %v", method(rpc), err)
	}
	need, known := rpcRoles[rpc]
	if !known {
		return Errorf(Code_PERMISSION_DENIED, "%s is not open to any certificate", method(rpc))
	}
	if len(need) > 0 && !slices.ContainsFunc(need, func(r tlsauth.Role) bool { return slices.Contains(roles, r) }) {
		return Errorf(Code_PERMISSION_DENIED, "%s needs %s certificate; this one is %s", method(rpc), article(need[0])+" "+joinRoles(need, " or "), joinRoles(roles, "+"))
	}
	return a.next.HandleRPC(stream, rpc)
}

// peerRoles reads the roles of the certificate the stream's connection
// was verified with.
func peerRoles(stream drpc.Stream) ([]tlsauth.Role, error) {
	tr, _ := drpcctx.Transport(stream.Context())
	gc, ok := tr.(*guardedConn)
	if !ok || gc.tls == nil {
		return nil, fmt.Errorf("connection is not TLS")
	}
	st := gc.tls.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return nil, fmt.Errorf("no verified certificate")
	}
	return tlsauth.RolesOf(st.VerifiedChains[0][0]), nil
}

func joinRoles(roles []tlsauth.Role, sep string) string {
	if len(roles) == 0 {
		return "without a role"
	}
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, sep)
}

func article(r tlsauth.Role) string {
	if strings.ContainsRune("aeiou", rune(r[0])) {
		return "an"
	}
	return "a"
}

// method is the RPC's name without its package: "Data/Replicate".
func method(rpc string) string {
	return strings.TrimPrefix(rpc, "/thunderyurts.wire.")
}
