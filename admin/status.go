package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// NodeStatusFunc asks the data node listening on addr for its own status
// (the Node.Status call). CollectStatus may call it from several goroutines
// at once.
type NodeStatusFunc func(ctx context.Context, addr string) (*wire.NodeStatus, error)

// nodeStatusTimeout bounds each node's answer, so one unresponsive node costs
// the whole status at most this long and the others are still shown.
const nodeStatusTimeout = 2 * time.Second

// Status is everything `admin status` shows; docs/status.md documents its
// JSON form. Slices are never nil, so the JSON form always has arrays.
type Status struct {
	// State is StateHealthy when there are no warnings, else StateUnhealthy.
	State string `json:"state"`
	// Error is, when unhealthy, the line `admin status` exits with.
	Error string `json:"error,omitempty"`
	// Cluster, Slots and ReplicationFactor come from the cluster's metadata.
	Cluster           string `json:"cluster"`
	Slots             int    `json:"slots"`
	ReplicationFactor int    `json:"replication_factor"`
	// TableVersion is the slot table's version; 0 when there is no table yet.
	TableVersion int64               `json:"table_version"`
	Coordinators []CoordinatorStatus `json:"coordinators"`
	Groups       []GroupStatus       `json:"groups"`
	Nodes        []NodeStatusRow     `json:"nodes"`
	// Backups is the backup schedule and its runs.
	Backups *BackupStatus `json:"backups,omitempty"`
	// Warnings are one-line findings an operator should act on.
	Warnings []string `json:"warnings"`
}

// CoordinatorStatus is one running coordinator.
type CoordinatorStatus struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// HTTP is the address of its HTTP endpoints; "" without them.
	HTTP string `json:"http"`
	// Role is "leader" or "standby".
	Role string `json:"role"`
}

// GroupStatus is one replica group as recorded in ZooKeeper, plus what its
// nodes report.
type GroupStatus struct {
	// Name, Epoch, Primary ("" none), ISR and Members are the group's record.
	Name    string   `json:"name"`
	Epoch   uint64   `json:"epoch"`
	Primary string   `json:"primary"`
	ISR     []string `json:"isr"`
	Members []string `json:"members"`
	// Slots is the number of slots the group owns in the slot table.
	Slots int `json:"slots"`
	// Keys is the key count the primary reports; nil when the primary did
	// not answer.
	Keys *uint64 `json:"keys"`
	// MaxLagEntries is how many log entries the furthest-behind member that
	// answered is behind the primary; nil when the primary or every
	// secondary did not answer.
	MaxLagEntries *uint64 `json:"max_lag_entries"`
}

// NodeStatusRow is one data node: registered in ZooKeeper, or listed as a
// group member without being registered.
type NodeStatusRow struct {
	ID string `json:"id"`
	// Group is the group listing the node, else the one it registered for.
	Group string `json:"group"`
	// Addr and HTTP (its HTTP endpoints) are empty for a member that is not
	// registered; HTTP also for a node without them.
	Addr string `json:"addr"`
	HTTP string `json:"http"`
	// Role is "primary" or "secondary" for group members, "unassigned" for
	// a registered node its group does not list, and "" for a node that is
	// down (State unreachable or not-registered): it serves no role.
	Role string `json:"role"`
	// State is one of the NodeState values; Error says why when the
	// node is not up.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Keys, LastSeq and Epoch are the node's own report; nil unless State is "up".
	Keys    *uint64 `json:"keys"`
	LastSeq *uint64 `json:"last_seq"`
	Epoch   *uint64 `json:"epoch"`
	// Lag is how many log entries the node is behind its group's primary;
	// nil unless both answered.
	Lag *uint64 `json:"lag"`
}

// The cluster's states (Status.State).
const (
	StateHealthy   = "healthy"
	StateUnhealthy = "unhealthy"
)

// Node states (NodeStatusRow.State): the node answered (up); it answered
// that its store failed, Error says how (store-failed); it did not answer,
// Error says why (unreachable); it is alive in ZooKeeper but was not asked
// (registered); a member without a live ZooKeeper session
// (not-registered).
const (
	NodeUp            = "up"
	NodeStoreFailed   = "store-failed"
	NodeUnreachable   = "unreachable"
	NodeRegistered    = "registered"
	NodeNotRegistered = "not-registered"
)

// Roles as shown in CoordinatorStatus and NodeStatusRow.
const (
	roleLeader     = "leader"
	roleStandby    = "standby"
	rolePrimary    = "primary"
	roleSecondary  = "secondary"
	roleUnassigned = "unassigned"
)

// NodeProbe is the outcome of asking one node for its status: Status when
// it answered, Err otherwise.
type NodeProbe struct {
	Status *wire.NodeStatus
	Err    error
}

// CollectStatus reads the cluster's state from ZooKeeper and, when
// nodeStatus is not nil, asks every registered node for its own status, all
// nodes in parallel and each bounded to a few seconds. A node that does not
// answer does not fail the call: its live columns stay empty and the error
// shows in its state and in Warnings. With slotCounts (a NodeStatusFunc
// that asks for NodeStatus.SlotCounts) every node is asked with it instead
// (which also makes its key count exact), and status warns about orphaned
// keys the primaries hold (orphanWarnings). Errors
// come from reading ZooKeeper; they wrap coord.ErrNoNode when the cluster
// does not exist.
func CollectStatus(ctx context.Context, c *coord.Cluster, nodeStatus, slotCounts NodeStatusFunc) (*Status, error) {
	// coord's errors already say what was being read; add which cluster.
	fail := func(err error) (*Status, error) {
		return nil, fmt.Errorf("cluster %q status: %w", c.Name(), err)
	}
	meta, err := c.Meta(ctx)
	if err != nil {
		return fail(err)
	}
	if meta.Name == "" {
		meta.Name = c.Name()
	}
	table, _, err := c.SlotTable(ctx)
	if errors.Is(err, coord.ErrNoNode) {
		table = nil // a cluster still being created; BuildStatus warns about it
	} else if err != nil {
		return fail(err)
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return fail(err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return fail(err)
	}
	coordinators, err := c.Coordinators(ctx)
	if err != nil {
		return fail(err)
	}
	backups, err := c.BackupState(ctx)
	if err != nil {
		return fail(err)
	}
	var probes, counts map[string]NodeProbe
	if nodeStatus != nil {
		// The primaries' slot counts find orphaned keys, when asked for and
		// there is a table to find them against.
		groupOf := map[string]string{} // primary → group
		if slotCounts != nil && table != nil {
			for _, g := range groups {
				if g.Primary != "" {
					groupOf[g.Primary] = g.Name
				}
			}
		}
		// Every node is asked with slotCounts when there is one: a node
		// asked for them counts its keys once all it has committed is
		// applied, so every member's KEYS is exact.
		ask := nodeStatus
		if slotCounts != nil {
			ask = slotCounts
		}
		probes = probeNodes(ctx, nodes, ask)
		if len(groupOf) > 0 {
			counts = map[string]NodeProbe{}
			for id, p := range probes {
				if g := groupOf[id]; g != "" {
					counts[g] = p
				}
			}
		}
	}
	s := BuildStatus(meta, table, groups, nodes, coordinators, probes)
	s.Warnings = append(s.Warnings, rebalanceWarnings(table, groups, time.Now())...)
	s.Backups = buildBackupStatus(backups, coordinators, func(format string, args ...any) {
		s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...))
	})
	if counts != nil {
		// The table again: a migration that began while the primaries
		// counted explains the keys it moved.
		after, _, err := c.SlotTable(ctx)
		if err != nil {
			return fail(err)
		}
		s.Warnings = append(s.Warnings, orphanWarnings(groups, counts, table, after)...)
	}
	s.judge()
	return s, nil
}

// probeNodes asks every node with an address for its status with ask, in
// parallel, and returns the outcomes by node ID.
func probeNodes(ctx context.Context, nodes []coord.NodeInfo, ask NodeStatusFunc) map[string]NodeProbe {
	probes := make(map[string]NodeProbe, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.Addr == "" {
			probes[n.ID] = NodeProbe{Err: errors.New("no address registered")}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, nodeStatusTimeout)
			defer cancel()
			st, err := ask(pctx, n.Addr)
			if err == nil && st == nil {
				err = errors.New("empty status reply")
			}
			mu.Lock()
			probes[n.ID] = NodeProbe{Status: st, Err: err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return probes
}

// BuildStatus assembles a Status, warnings included, from what CollectStatus
// read; it does no I/O. table may be nil (no slot table yet). probes holds
// each asked node's answer by node ID; a nil map means no node was asked.
// Groups are sorted by name; nodes by group and ID, members of a group
// first, registered nodes no group lists ("unassigned") last.
func BuildStatus(meta coord.ClusterMeta, table *coord.SlotTable, groups []*coord.Group,
	nodes []coord.NodeInfo, coordinators []coord.CoordinatorInfo, probes map[string]NodeProbe) *Status {
	s := &Status{
		Cluster:           meta.Name,
		Slots:             meta.Slots,
		ReplicationFactor: meta.ReplicationFactor,
		Coordinators:      make([]CoordinatorStatus, 0, len(coordinators)),
		Groups:            make([]GroupStatus, 0, len(groups)),
		Nodes:             []NodeStatusRow{},
		Warnings:          []string{},
	}
	warn := func(format string, args ...any) {
		s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...))
	}

	for i, c := range coordinators {
		role := roleStandby
		if i == 0 {
			role = roleLeader
		}
		s.Coordinators = append(s.Coordinators, CoordinatorStatus{ID: c.ID, Addr: c.Addr, HTTP: c.HTTP, Role: role})
	}
	if len(coordinators) == 0 {
		warn("no coordinator running")
	}

	slotCounts := map[string]int{}
	if table == nil {
		warn("no slot table yet")
	} else {
		s.TableVersion = table.Version
		for _, owner := range table.Owners {
			slotCounts[owner]++
		}
	}

	registered := make(map[string]coord.NodeInfo, len(nodes))
	for _, n := range nodes {
		registered[n.ID] = n
	}
	groups = slices.Clone(groups)
	slices.SortFunc(groups, func(a, b *coord.Group) int { return strings.Compare(a.Name, b.Name) })
	knownGroup := map[string]bool{}
	seen := map[string]bool{} // nodes given a row as group members
	for _, g := range groups {
		knownGroup[g.Name] = true
		gs := GroupStatus{
			Name:    g.Name,
			Epoch:   g.Epoch,
			Primary: g.Primary,
			ISR:     nonNil(g.ISR),
			Members: nonNil(g.Members),
			Slots:   slotCounts[g.Name],
		}
		warnGroup(warn, g, meta.ReplicationFactor, registered)

		primary, primaryUp := liveStatus(probes, g.Primary)
		if primaryUp {
			gs.Keys = ptr(primary.Keys)
		}
		members := slices.Clone(g.Members)
		if g.Primary != "" && !slices.Contains(members, g.Primary) {
			members = append(members, g.Primary) // show it even if the lists disagree
		}
		slices.Sort(members)
		var maxLag uint64
		lagKnown := primaryUp && len(members) == 1
		for _, id := range members {
			role := roleSecondary
			if id == g.Primary {
				role = rolePrimary
			}
			row := nodeRow(id, g.Name, role, registered, probes)
			seen[id] = true
			if st, up := liveStatus(probes, id); up && primaryUp {
				lag := primary.LastSeq - min(primary.LastSeq, st.LastSeq)
				row.Lag = ptr(lag)
				if id != g.Primary {
					lagKnown = true
					maxLag = max(maxLag, lag)
				}
			}
			s.Nodes = append(s.Nodes, row)
		}
		if lagKnown {
			gs.MaxLagEntries = ptr(maxLag)
		}
		s.Groups = append(s.Groups, gs)
	}

	// Registered nodes no group lists: joining, or left over.
	var unassigned []NodeStatusRow
	for _, n := range nodes {
		if !seen[n.ID] {
			unassigned = append(unassigned, nodeRow(n.ID, n.Group, roleUnassigned, registered, probes))
		}
	}
	slices.SortFunc(unassigned, func(a, b NodeStatusRow) int {
		return cmp.Or(strings.Compare(a.Group, b.Group), strings.Compare(a.ID, b.ID))
	})
	s.Nodes = append(s.Nodes, unassigned...)

	for _, row := range s.Nodes {
		switch row.State {
		case NodeUnreachable:
			warn("node %s (%s) unreachable: %s", row.ID, row.Addr, row.Error)
		case NodeStoreFailed:
			warn("node %s (%s) serves nothing, its store failed: %s", row.ID, row.Addr, row.Error)
		}
	}
	if table != nil {
		warnSlots(warn, table, knownGroup)
	}
	s.judge()
	return s
}

// judge sets State from the warnings; call it after adding any.
func (s *Status) judge() {
	s.State, s.Error = StateHealthy, ""
	if err := s.Problem(); err != nil {
		s.State, s.Error = StateUnhealthy, err.Error()
	}
}

// Problem is the error `admin status` exits with when the cluster is
// unhealthy: the first warning, and how many more there are; nil when
// healthy.
func (s *Status) Problem() error {
	switch n := len(s.Warnings); n {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("cluster %s is unhealthy: %s", s.Cluster, s.Warnings[0])
	default:
		return fmt.Errorf("cluster %s is unhealthy: %s (and %d more %s)", s.Cluster, s.Warnings[0], n-1, plural(n-1, "warning", "warnings"))
	}
}

// warnGroup adds the warnings about one group's membership.
func warnGroup(warn func(string, ...any), g *coord.Group, rf int, registered map[string]coord.NodeInfo) {
	if n := len(g.Members); n < rf {
		warn("group %s has %d %s, replication factor is %d", g.Name, n, plural(n, "member", "members"), rf)
	}
	if len(g.ISR) < len(g.Members) {
		warn("group %s has %d of %d members in sync", g.Name, len(g.ISR), len(g.Members))
	}
	switch _, ok := registered[g.Primary]; {
	case g.Primary == "":
		warn("group %s has no primary", g.Name)
	case !ok:
		warn("group %s primary %s is not registered", g.Name, g.Primary)
	}
	for _, id := range g.Members {
		if _, ok := registered[id]; !ok && id != g.Primary {
			warn("group %s member %s is not registered", g.Name, id)
		}
	}
	for _, id := range g.Resync {
		warn("group %s member %s rebuilds its store from the group at its next start (admin node resync)", g.Name, id)
	}
}

// warnSlots adds a warning for slots nobody owns and for slots owned by a
// group that does not exist, naming the slot ranges.
func warnSlots(warn func(string, ...any), table *coord.SlotTable, knownGroup map[string]bool) {
	orphans := map[string][]Range{}
	var owners []string
	for _, r := range slotRanges(table) {
		if r.group != "" && knownGroup[r.group] {
			continue
		}
		if _, ok := orphans[r.group]; !ok {
			owners = append(owners, r.group)
		}
		orphans[r.group] = append(orphans[r.group], r.Range)
	}
	slices.Sort(owners)
	for _, owner := range owners {
		ranges := orphans[owner]
		n := countSlots(ranges)
		if owner == "" {
			warn("%d %s unassigned: %s", n, plural(n, "slot", "slots"), formatRanges(ranges))
		} else {
			warn("%d %s owned by unknown group %s: %s", n, plural(n, "slot", "slots"), owner, formatRanges(ranges))
		}
	}
}

// nodeRow builds the row of node id, shown in group with role.
func nodeRow(id, group, role string, registered map[string]coord.NodeInfo, probes map[string]NodeProbe) NodeStatusRow {
	row := NodeStatusRow{ID: id, Group: group, Role: role}
	info, ok := registered[id]
	if !ok {
		row.State, row.Role = NodeNotRegistered, ""
		return row
	}
	row.Addr, row.HTTP = info.Addr, info.HTTP
	p, asked := probes[id]
	switch {
	case !asked:
		row.State = NodeRegistered
	case p.Err != nil:
		row.State, row.Role, row.Error = NodeUnreachable, "", p.Err.Error()
	default:
		row.State = NodeUp
		if p.Status.State != "" {
			// The node says what keeps it from serving: "store-failed: <error>".
			row.State = NodeStoreFailed
			row.Error = strings.TrimPrefix(p.Status.State, NodeStoreFailed+": ")
		}
		row.Keys, row.LastSeq, row.Epoch = ptr(p.Status.Keys), ptr(p.Status.LastSeq), ptr(p.Status.Epoch)
	}
	return row
}

// liveStatus returns the status node id reported, if it answered.
func liveStatus(probes map[string]NodeProbe, id string) (*wire.NodeStatus, bool) {
	p, ok := probes[id]
	if !ok || p.Err != nil || p.Status == nil {
		return nil, false
	}
	return p.Status, true
}

func ptr[T any](v T) *T { return &v }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
