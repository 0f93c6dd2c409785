package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Files checked several at a time still fail on the first damaged one in
// slot order, whichever reader finds a damage first.
func TestReadSlotFilesNamesTheFirstDamagedFile(t *testing.T) {
	d, err := openDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := checked{d}
	set := writeSyncTestSet(t, store)
	m := syncTestManifest()
	if err := set.Finish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	for _, readers := range []int{1, 4, 64} {
		if err := readSlotFiles(context.Background(), store, m, readers); err != nil {
			t.Fatalf("%d readers, nothing damaged: %v", readers, err)
		}
	}
	// A damage late in slot order, and one early that takes longer to
	// find (at the file's end).
	for _, slot := range []int{5, 13} {
		path := filepath.Join(d.root, set.ID(), SlotFileName(slot))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		at := 20 // the header
		if slot == 5 {
			at = len(data) - 2 // the trailer
		}
		data[at] ^= 0xff
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, readers := range []int{1, 4, 64} {
		err := readSlotFiles(context.Background(), store, m, readers)
		var ce *CorruptError
		if !errors.As(err, &ce) || !strings.HasSuffix(ce.File, SlotFileName(5)) {
			t.Errorf("%d readers: %v; want slot 5's file named", readers, err)
		}
	}
}
