package datastore

import (
	"bufio"
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
