package clustertest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// pausingConn pauses the first read of the slot table: once it is read,
// and before the reader gets it, it signals reached and waits for
// release.
type pausingConn struct {
	coord.Conn
	once             sync.Once
	reached, release chan struct{}
}

func (p *pausingConn) Get(ctx context.Context, path string) ([]byte, coord.Version, error) {
	data, v, err := p.Conn.Get(ctx, path)
	if strings.HasSuffix(path, "/slots") {
		p.once.Do(func() {
			close(p.reached)
			<-p.release
		})
	}
	return data, v, err
}

// pausingStore pauses the first Put of file: it signals reached and waits
// for release before it stores anything.
type pausingStore struct {
	backup.Store
	file             string
	reached, release chan struct{}
}

func (p *pausingStore) Put(ctx context.Context, name string, r io.Reader) error {
	if strings.HasSuffix(name, "/"+p.file) {
		select {
		case <-p.reached:
		default:
			close(p.reached)
			<-p.release
		}
	}
	return p.Store.Put(ctx, name, r)
}

// A backup taken while slots move reads every slot once, from the group
// that owns it: a group that refuses slots moved away before its copy
// (MOVED) and a copy cut before its slots moved are both read again from
// the new owner. The migrations are switched at fixed points of the run:
// m1 (12-15) right after the backup read the slot table, m2 (8-11) while
// g1's copy of them streams.
func TestBackupDuringMigration(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	ctx := ctxFor(t, 3*time.Minute)
	all := slotKeys("b", 0, migSlots-1, 400)
	for _, k := range all { // overwritten below: the backup holds the latest
		if err := cli.Put(ctx, []byte(k), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	put(t, cli, all...)
	startMigration(t, c, coord.Migration{ID: "m1", From: "g1", To: "g2", First: 12, Last: 15})
	startMigration(t, c, coord.Migration{ID: "m2", From: "g1", To: "g2", First: 8, Last: 11})
	waitReport(c, "g2", "m2", phase("caught-up"))
	// Staged slots are not the target's: it does not serve them.
	if err := dumpFrom(ctx, c, "g2", 8); !errors.Is(err, wire.ErrMoved) {
		t.Fatalf("dump of slot 8 staged on g2: %v, want MOVED", err)
	}

	dir, err := backup.OpenStore(ctx, t.TempDir(), backup.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conn := &pausingConn{Conn: c.Coord().Conn(), reached: make(chan struct{}), release: make(chan struct{})}
	store := &pausingStore{Store: dir, file: backup.SlotFileName(0), reached: make(chan struct{}), release: make(chan struct{})}
	var logs bytes.Buffer
	type result struct {
		res backup.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := backup.Run(ctx, backup.RunConfig{Cluster: coord.NewCluster(conn, c.Coord().Name()), Store: store,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		done <- result{res, err}
	}()
	await := func(what string, ch chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case r := <-done:
			t.Fatalf("backup ended before %s: %+v, %v", what, r.res, r.err)
		}
	}
	await("it read the slot table", conn.reached)
	complete(t, c, "m1")
	// The source dropped the moved slots: it does not serve them.
	if err := dumpFrom(ctx, c, "g1", 12); !errors.Is(err, wire.ErrMoved) {
		t.Fatalf("dump of slot 12 from g1 after it moved: %v, want MOVED", err)
	}
	close(conn.release)
	await("g1's copy of slot 0", store.reached)
	complete(t, c, "m2")
	close(store.release)
	r := <-done
	if r.err != nil {
		t.Fatalf("backup: %v\n%s", r.err, logs.String())
	}
	// Round 1: g1 refused all (12-15 had moved), or a member that had not
	// yet seen the switch served them; round 2: g1's copy of 8-11 was cut
	// before they moved, so they were read again from g2.
	var again []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "copying them again") {
			again = append(again, line[strings.Index(line, " slots=")+1:])
		}
	}
	if len(again) != 2 || !strings.HasPrefix(again[0], "slots=0-15 ") && !strings.HasPrefix(again[0], "slots=12-15 ") ||
		!strings.HasPrefix(again[1], "slots=8-11 ") {
		t.Errorf("rounds again for %q; want 0-15 (or 12-15), then 8-11; log:\n%s", again, logs.String())
	}

	if err := backup.Verify(ctx, store, r.res.ID); err != nil {
		t.Fatal(err)
	}
	m, err := backup.OpenSet(ctx, store, r.res.ID)
	if err != nil {
		t.Fatal(err)
	}
	table, _, err := c.Coord().SlotTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.SlotTableVersion != table.Version || len(m.Groups) != 2 {
		t.Errorf("manifest at table v%d with groups %v; want v%d, g1 and g2", m.SlotTableVersion, m.Groups, table.Version)
	}
	got := map[string]string{}
	for _, e := range m.Slots {
		if want := table.Owner(e.Slot); e.Group != want {
			t.Errorf("slot %d copied from %s; its owner is %s", e.Slot, e.Group, want)
		}
		err := backup.ReadSlot(ctx, store, m, e, func(key, value []byte) error {
			if _, dup := got[string(key)]; dup {
				t.Errorf("key %s twice in the backup", key)
			}
			got[string(key)] = string(value)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	delete(got, "ping") // the harness's
	if len(got) != len(all) {
		t.Errorf("backup holds %d keys, want %d", len(got), len(all))
	}
	for _, k := range all {
		if got[k] != "v-"+k {
			t.Fatalf("key %s in the backup: %q, want %q", k, got[k], "v-"+k)
		}
	}

	dst := clustertest.New(t, clustertest.Options{Slots: 8, ReplicationFactor: 1})
	dst.StartCoordinator("c1")
	dst.StartNode("n1", "only")
	dst.WaitServing()
	if _, err := backup.Restore(ctx, backup.RestoreConfig{Cluster: dst.Coord(), Store: store, ID: r.res.ID}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, dst.Client(), all...)
}

// dumpFrom asks group's primary for a copy of slot.
func dumpFrom(ctx context.Context, c *clustertest.Cluster, group string, slot int) error {
	addr := c.Node(c.Primary(group)).Addr()
	return nodeclient.Nodes{}.Dump(ctx, addr, []int{slot}, 0, 0, func(nodeclient.DumpCut) error { return nil }, func(int, []byte, []byte) error { return nil })
}
