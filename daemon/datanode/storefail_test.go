package datanode

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// smallDisk mounts a 16 MiB tmpfs for a node's data, or skips the test
// where that is not allowed (not root).
func smallDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("cannot mount a tmpfs for a full disk: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk takes all but leave bytes of dir's file system and returns how to
// give them back.
func fillDisk(t *testing.T, dir string, leave int64) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	var size int64
	for {
		n, err := f.Write(chunk)
		size += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(max(size-leave, 0)); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// putUntilRefused writes 32 KiB values through addr until one is refused.
func putUntilRefused(t *testing.T, addr string) *wire.Response {
	t.Helper()
	value := strings.Repeat("x", 32<<10)
	for i := 0; i < 1000; i++ {
		if r := call(t, addr, patience, put("fill", value))[0]; r.Code != wire.Code_OK {
			return r
		}
	}
	t.Fatal("the disk never filled up")
	return nil
}

// A primary whose disk fills up stops serving, hands its role to the
// in-sync secondary at once and says why; once space is back it reopens its
// store and rejoins the in-sync set by itself.
func TestPrimaryWithFailedStoreStepsDownAndRecovers(t *testing.T) {
	disk := smallDisk(t)
	c := newTestCluster(t)
	a := c.startNode(filepath.Join(disk, "a"), nil, nil)
	c.waitGroup("a leads", func(g *coord.Group) bool { return g.Primary == a.ID() })
	b := c.startNode(nodeDir(t, "b"), nil, nil)
	c.waitServing(a, b)
	epoch := c.group().Epoch

	free := fillDisk(t, disk, 256<<10)
	r := putUntilRefused(t, a.Addr())
	if r.Code != wire.Code_UNAVAILABLE {
		t.Fatalf("put on a full disk: %v %s", r.Code, r.Message)
	}
	g := c.waitGroup("b takes over", func(g *coord.Group) bool { return g.Primary == b.ID() })
	if g.Epoch <= epoch || slices.Contains(g.ISR, a.ID()) {
		t.Fatalf("after the handover: epoch %d (was %d), ISR %v", g.Epoch, epoch, g.ISR)
	}
	if err := a.readyErr(); err == nil || !strings.HasPrefix(err.Error(), stateStoreFailed+": ") {
		t.Fatalf("readyz of the failed node: %v", err)
	}
	st, err := (&service{n: a}).Status(t.Context(), &wire.NodeStatusRequest{})
	if err != nil || !strings.HasPrefix(st.State, stateStoreFailed+": ") {
		t.Fatalf("status of the failed node: %v, %v", st, err)
	}
	if r := call(t, a.Addr(), patience, get("ping"))[0]; r.Code == wire.Code_OK {
		t.Fatal("the failed node served a read")
	}
	eventually(t, "b acknowledges writes", func() bool {
		return call(t, b.Addr(), patience, put("after", "failover"))[0].Code == wire.Code_OK
	})

	free()
	c.waitGroup("a back in sync", func(g *coord.Group) bool { return slices.Contains(g.ISR, a.ID()) })
	// Back in sync, the recovered secondary is ready again.
	eventually(t, "the recovered secondary is ready", func() bool { return a.readyErr() == nil })
}

// A secondary whose disk fills up leaves the in-sync set, so writes go on
// without it, and rejoins by itself once space is back.
func TestSecondaryWithFailedStoreLeavesAndRejoins(t *testing.T) {
	disk := smallDisk(t)
	c := newTestCluster(t)
	a := c.startNode(nodeDir(t, "a"), nil, nil)
	c.waitGroup("a leads", func(g *coord.Group) bool { return g.Primary == a.ID() })
	b := c.startNode(filepath.Join(disk, "b"), nil, nil)
	c.waitServing(a, b)

	free := fillDisk(t, disk, 256<<10)
	value := strings.Repeat("x", 32<<10)
	eventually(t, "b fails", func() bool {
		call(t, a.Addr(), patience, put("fill", value))
		return b.state.Load().storeErr != nil
	})
	c.waitGroup("b out of the ISR", func(g *coord.Group) bool { return !slices.Contains(g.ISR, b.ID()) })
	if r := call(t, a.Addr(), patience, put("without", "b"))[0]; r.Code != wire.Code_OK {
		t.Fatalf("put without the failed secondary: %v %s", r.Code, r.Message)
	}
	st, err := (&service{n: b}).Status(t.Context(), &wire.NodeStatusRequest{})
	if err != nil || !strings.HasPrefix(st.State, stateStoreFailed+": ") {
		t.Fatalf("status of the failed node: %v, %v", st, err)
	}

	free()
	c.waitGroup("b back in sync", func(g *coord.Group) bool { return slices.Contains(g.ISR, b.ID()) })
	if b.state.Load().storeErr != nil {
		t.Fatal("b in sync with a failed store")
	}
	if r := call(t, a.Addr(), patience, put("with", "b"))[0]; r.Code != wire.Code_OK {
		t.Fatalf("put after b rejoined: %v %s", r.Code, r.Message)
	}
}
