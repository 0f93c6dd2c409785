package datastore

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDataFileMappedAhead checks that the data file is mapped with room to
// grow to 16 GiB, as docs/architecture.md says. A growth inside the mapping
// needs no remap; a remap waits for every read transaction (a new
// secondary's or a backup's copy holds one for as long as it runs), and the
// writes behind the apply round wait with it.
func TestDataFileMappedAhead(t *testing.T) {
	_, path := newStore(t, Options{})
	data, err := filepath.EvalSymlinks(filepath.Join(path, dataFile))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps: %v", err)
	}
	defer f.Close()
	var mapped int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != data {
			continue
		}
		start, end, _ := strings.Cut(fields[0], "-")
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("maps line %q", sc.Text())
		}
		mapped += int64(hi - lo)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	const want = 16 << 30
	if mapped < want {
		t.Fatalf("%s is mapped over %d bytes, want at least %d", data, mapped, int64(want))
	}
}

// TestApplyUnmapsReadPages: the pages of the data file a read mapped into
// the process are unmapped by the next apply transaction, so that the
// node's resident size does not count the whole file after a round over
// random keys (docs/operations.md, "Memory").
func TestApplyUnmapsReadPages(t *testing.T) {
	s, path := newStore(t, Options{Slots: 1, NoSync: true})
	data, err := filepath.EvalSymlinks(filepath.Join(path, dataFile))
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 100)
	muts := make([]Mutation, 20_000)
	for i := range muts {
		muts[i] = Mutation{Key: fmt.Appendf(nil, "k%07d", i), Value: value}
	}
	if _, err := s.Write(testCtx(t), muts); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s)
	if kvs := dump(t, s); len(kvs) != len(muts) { // reads every leaf from the file
		t.Fatalf("scan: %d keys, want %d", len(kvs), len(muts))
	}
	read := mappedRSS(t, data)
	if read < 1<<20 {
		t.Fatalf("after a scan of %d keys, %d bytes of %s are mapped: want the file's pages", len(muts), read, data)
	}
	mustPut(t, s, 0, "k", "v")
	waitApplied(t, s)
	if after := mappedRSS(t, data); after > read/4 {
		t.Fatalf("after an apply transaction, %d bytes of %s are still mapped (%d after the scan)", after, data, read)
	}
}

// mappedRSS is how many bytes of the file at path are resident in this
// process's mappings of it (/proc/self/smaps).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	var rss int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			in = len(fields) >= 6 && fields[5] == path
		case in && len(fields) == 3 && fields[0] == "Rss:":
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatalf("smaps line %q", sc.Text())
			}
			rss += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rss
}
