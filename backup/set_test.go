package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/internal/s3test"
)

const testSlots = 8

// groupOf spreads the test slots over two groups.
func groupOf(slot int) string { return fmt.Sprintf("g%d", slot%2+1) }

var testGroups = map[string]backup.GroupPoint{
	"g1": {Epoch: 2, Sequence: 100, Node: "n1"},
	"g2": {Epoch: 5, Sequence: 200, Node: "n4"},
}

// slotRecords are the test records of a slot: slots 3 and 7 (both of g2)
// are empty, the others hold slot+1 keys, binary ones among them.
func slotRecords(slot int) []record {
	if slot == 3 || slot == 7 {
		return nil
	}
	var recs []record
	for i := range slot + 1 {
		recs = append(recs, record{[]byte(fmt.Sprintf("key-%d-%d\x00\xff", slot, i)), bytes.Repeat([]byte{byte(i)}, 10*i)})
	}
	return recs
}

func slotHeader(slot int) backup.SlotHeader {
	g := testGroups[groupOf(slot)]
	return backup.SlotHeader{Slot: slot, Slots: testSlots, Group: groupOf(slot), Epoch: g.Epoch, Sequence: g.Sequence}
}

// writeSlots writes the test slots into set, four at a time.
func writeSlots(t testing.TB, set *backup.Set, slots ...int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(slots))
	sem := make(chan struct{}, 4)
	for _, slot := range slots {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := set.WriteSlot(context.Background(), slotHeader(slot), func(add func(k, v []byte) error) error {
				for _, r := range slotRecords(slot) {
					if err := add(r.k, r.v); err != nil {
						return err
					}
				}
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("write slot: %v", err)
		}
	}
}

func allSlots() []int {
	s := make([]int, testSlots)
	for i := range s {
		s[i] = i
	}
	return s
}

func testManifest() *backup.Manifest {
	return &backup.Manifest{Cluster: "c1", SlotCount: testSlots, SlotTableVersion: 9, Start: time.Now().UTC(), ToolVersion: "test", Groups: testGroups}
}

// writeSet writes a complete test backup started at start and returns its ID.
func writeSet(t testing.TB, store backup.Store, start time.Time) string {
	t.Helper()
	set, err := backup.NewSet(store, backup.NewID(start))
	if err != nil {
		t.Fatal(err)
	}
	writeSlots(t, set, allSlots()...)
	if err := set.Finish(context.Background(), testManifest()); err != nil {
		t.Fatalf("finish: %v", err)
	}
	return set.ID()
}

func testSetRoundTrip(t *testing.T, store backup.Store) {
	ctx := context.Background()
	id := writeSet(t, store, time.Now())
	if err := backup.Verify(ctx, store, id); err != nil {
		t.Fatalf("verify: %v", err)
	}
	infos, err := backup.List(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	var wantKeys, wantBytes int64
	for _, s := range allSlots() {
		for _, r := range slotRecords(s) {
			wantKeys++
			wantBytes += int64(len(r.k) + len(r.v))
		}
	}
	if len(infos) != 1 || infos[0].ID != id || !infos[0].Complete || infos[0].Err != nil || infos[0].Keys != wantKeys || infos[0].Bytes != wantBytes || infos[0].Files != testSlots+1 {
		t.Fatalf("list: %+v; want %s complete with %d keys, %d bytes, %d files", infos, id, wantKeys, wantBytes, testSlots+1)
	}
	m, err := backup.OpenSet(ctx, store, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cluster != "c1" || m.SlotTableVersion != 9 || m.ID != id || m.FormatVersion != backup.ManifestVersion || m.End.IsZero() || len(m.Slots) != testSlots {
		t.Fatalf("manifest %+v", m)
	}
	for _, e := range m.Slots {
		var got []record
		err := backup.ReadSlot(ctx, store, m, e, func(k, v []byte) error {
			got = append(got, record{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
		if err != nil {
			t.Fatalf("read slot %d: %v", e.Slot, err)
		}
		want := slotRecords(e.Slot)
		if len(got) != len(want) || e.File != backup.SlotFileName(e.Slot) || e.Group != groupOf(e.Slot) {
			t.Fatalf("slot %d: entry %+v, %d records, want %d", e.Slot, e, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i].k, want[i].k) || !bytes.Equal(got[i].v, want[i].v) {
				t.Fatalf("slot %d record %d differs", e.Slot, i)
			}
		}
	}
	// fn's error stops the read.
	stop := errors.New("stop")
	if err := backup.ReadSlot(ctx, store, m, m.Slots[5], func(k, v []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("read slot with a failing fn: %v", err)
	}
	// Manifests of version 1 (no per-slot cut: the group's) still read.
	editManifest(t, store, id, func(m *backup.Manifest) {
		m.FormatVersion = 1
		for i := range m.Slots {
			m.Slots[i].Epoch, m.Slots[i].Sequence = 0, 0
		}
	})
	if err := backup.Verify(ctx, store, id); err != nil {
		t.Fatalf("verify a version 1 manifest: %v", err)
	}
}

func TestSetRoundTripDir(t *testing.T) {
	testSetRoundTrip(t, openStore(t, t.TempDir(), backup.StoreOptions{}))
}

func TestSetRoundTripS3(t *testing.T) {
	srv := s3test.Start(t, "bk1")
	testSetRoundTrip(t, openStore(t, "s3://bk1/sets", backup.StoreOptions{S3Endpoint: srv.Endpoint}))
}

func getObject(t *testing.T, s backup.Store, name string) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func putObject(t *testing.T, s backup.Store, name string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// editObject replaces an object with edit's result.
func editObject(t *testing.T, s backup.Store, name string, edit func([]byte) []byte) {
	t.Helper()
	putObject(t, s, name, edit(getObject(t, s, name)))
}

// Each kind of damage, in a directory and in S3.
func TestVerifyDamage(t *testing.T) {
	srv := s3test.Start(t, "damage")
	stores := map[string]func(t *testing.T) backup.Store{
		"dir": func(t *testing.T) backup.Store { return openStore(t, t.TempDir(), backup.StoreOptions{}) },
		"s3": func(t *testing.T) backup.Store {
			return openStore(t, "s3://damage/"+strings.ReplaceAll(t.Name(), " ", "_"), backup.StoreOptions{S3Endpoint: srv.Endpoint})
		},
	}
	headerLen := 36 + 2 + 4 // the test groups' names are 2 bytes
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, s backup.Store, id string)
		want   string // after "backup file <id>/"
		is     error
	}{
		{"flipped byte", func(t *testing.T, s backup.Store, id string) {
			editObject(t, s, id+"/slot-0005.tyb", func(d []byte) []byte { d[headerLen+20] ^= 1; return d })
		}, "slot-0005.tyb: offset 42: record 1: checksum mismatch", backup.ErrCorrupt},
		{"truncated", func(t *testing.T, s backup.Store, id string) {
			editObject(t, s, id+"/slot-0005.tyb", func(d []byte) []byte { return d[:len(d)-10] })
		}, "slot-0005.tyb: 335 bytes, the manifest says 345", backup.ErrCorrupt},
		{"deleted", func(t *testing.T, s backup.Store, id string) {
			if err := s.Delete(context.Background(), id+"/slot-0002.tyb"); err != nil {
				t.Fatal(err)
			}
		}, "slot-0002.tyb: missing", backup.ErrCorrupt},
		{"swapped", func(t *testing.T, s backup.Store, id string) {
			// Two files of the same size and group: only their headers differ.
			a, b := getObject(t, s, id+"/slot-0003.tyb"), getObject(t, s, id+"/slot-0007.tyb")
			putObject(t, s, id+"/slot-0003.tyb", b)
			putObject(t, s, id+"/slot-0007.tyb", a)
		}, `slot-0003.tyb: header says slot 7 of 8, group "g2" at epoch 5 sequence 200; the manifest says slot 3 of 8`, backup.ErrCorrupt},
		{"extra file", func(t *testing.T, s backup.Store, id string) {
			putObject(t, s, id+"/slot-0099.tyb", []byte("x"))
		}, "slot-0099.tyb: not in the manifest", backup.ErrCorrupt},
		{"manifest checksum edited", func(t *testing.T, s backup.Store, id string) {
			editManifest(t, s, id, func(m *backup.Manifest) { m.Slots[4].SHA256 = strings.Repeat("0", 64) })
		}, "slot-0004.tyb: SHA-256 ", backup.ErrCorrupt},
		{"manifest count edited", func(t *testing.T, s backup.Store, id string) {
			editManifest(t, s, id, func(m *backup.Manifest) { m.Slots[6].Keys++ })
		}, "slot-0006.tyb: 7 keys and ", backup.ErrCorrupt},
		{"manifest epoch edited", func(t *testing.T, s backup.Store, id string) {
			editManifest(t, s, id, func(m *backup.Manifest) { m.Slots[1].Epoch = 6 })
		}, "slot-0001.tyb: header says slot 1 of 8, group \"g2\" at epoch 5 sequence 200; the manifest says slot 1 of 8, group \"g2\" at epoch 6", backup.ErrCorrupt},
		// Version 1 manifests have the group's point only; it is checked.
		{"version 1 manifest group epoch edited", func(t *testing.T, s backup.Store, id string) {
			editManifest(t, s, id, func(m *backup.Manifest) {
				m.FormatVersion = 1
				m.Groups["g2"] = backup.GroupPoint{Epoch: 6, Sequence: 200}
			})
		}, "slot-0001.tyb: header says slot 1 of 8, group \"g2\" at epoch 5 sequence 200; the manifest says slot 1 of 8, group \"g2\" at epoch 6", backup.ErrCorrupt},
		{"manifest slot dropped", func(t *testing.T, s backup.Store, id string) {
			editManifest(t, s, id, func(m *backup.Manifest) { m.Slots = m.Slots[:7] })
		}, "manifest.json: 7 slot files for 8 slots", backup.ErrCorrupt},
		{"manifest garbage", func(t *testing.T, s backup.Store, id string) {
			editObject(t, s, id+"/manifest.json", func(d []byte) []byte { return d[:len(d)/2] })
		}, "manifest.json: unexpected end of JSON input", backup.ErrCorrupt},
		{"manifest missing", func(t *testing.T, s backup.Store, id string) {
			if err := s.Delete(context.Background(), id+"/manifest.json"); err != nil {
				t.Fatal(err)
			}
		}, "", backup.ErrIncomplete},
	} {
		for kind, newStore := range stores {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				testVerifyDamage(t, newStore(t), tc.damage, tc.want, tc.is)
			})
		}
	}
}

func testVerifyDamage(t *testing.T, store backup.Store, damage func(*testing.T, backup.Store, string), wantMsg string, is error) {
	id := writeSet(t, store, time.Now())
	damage(t, store, id)
	err := backup.Verify(context.Background(), store, id)
	t.Log(err)
	if err == nil || !errors.Is(err, is) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("verify: %v, want one line wrapping %v", err, is)
	}
	if want := "backup file " + id + "/" + wantMsg; is == backup.ErrCorrupt && !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("verify:\n got %v\nwant %s…", err, want)
	}
	infos, err := backup.List(context.Background(), store)
	if err != nil || len(infos) != 1 {
		t.Fatalf("list: %+v, %v", infos, err)
	}
	// List reads only the manifest: a backup lists as complete if that is
	// there and consistent.
	manifestOK := !strings.Contains(wantMsg, "manifest.json") && is != backup.ErrIncomplete
	if infos[0].Complete != manifestOK {
		t.Fatalf("listed as complete=%v (%v), want %v", infos[0].Complete, infos[0].Err, manifestOK)
	}
}

// editManifest rewrites a backup's manifest through edit.
func editManifest(t *testing.T, s backup.Store, id string, edit func(*backup.Manifest)) {
	t.Helper()
	m, err := backup.OpenSet(context.Background(), s, id)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	putObject(t, s, id+"/manifest.json", data)
}

func TestWriteSlotFailure(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir(), backup.StoreOptions{})
	set, err := backup.NewSet(store, backup.NewID(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	writeSlots(t, set, 0, 1, 2, 3, 4, 5, 6)
	// The source of slot 7 fails midway: nothing of it is stored.
	lost := errors.New("node n4 went away")
	_, err = set.WriteSlot(ctx, slotHeader(7), func(add func(k, v []byte) error) error {
		if err := add([]byte("k"), make([]byte, 1<<20)); err != nil {
			return err
		}
		return lost
	})
	if !errors.Is(err, lost) || !strings.Contains(err.Error(), "slot-0007.tyb") {
		t.Fatalf("write slot: %v, want the source's error naming the file", err)
	}
	if objs, _ := store.List(ctx, set.ID()+"/slot-0007"); len(objs) != 0 {
		t.Fatalf("a failed slot left %+v", objs)
	}
	// A record out of bounds fails the slot the same way.
	_, err = set.WriteSlot(ctx, slotHeader(7), func(add func(k, v []byte) error) error { return add(nil, nil) })
	if err == nil || !strings.Contains(err.Error(), "key of 0 bytes") {
		t.Fatalf("write slot with an empty key: %v", err)
	}
	if err := set.Finish(ctx, testManifest()); err == nil || !strings.Contains(err.Error(), "7 slot files for 8 slots") {
		t.Fatalf("finish without slot 7: %v", err)
	}
	infos, err := backup.List(ctx, store)
	if err != nil || len(infos) != 1 || infos[0].Complete || !errors.Is(infos[0].Err, backup.ErrIncomplete) {
		t.Fatalf("list: %+v, %v; want one incomplete backup", infos, err)
	}
	// A retry completes it.
	writeSlots(t, set, 7)
	if err := set.Finish(ctx, testManifest()); err != nil {
		t.Fatal(err)
	}
	if err := backup.Verify(ctx, store, set.ID()); err != nil {
		t.Fatal(err)
	}
}

// Finish reads every file back: a file damaged after it was written stops
// the manifest from being written.
func TestFinishChecksFiles(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir(), backup.StoreOptions{})
	set, err := backup.NewSet(store, backup.NewID(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	writeSlots(t, set, allSlots()...)
	editObject(t, store, set.ID()+"/slot-0004.tyb", func(d []byte) []byte { d[len(d)-30] ^= 1; return d })
	err = set.Finish(ctx, testManifest())
	if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), set.ID()+"/slot-0004.tyb") {
		t.Fatalf("finish: %v, want the damaged file named", err)
	}
	if _, err := store.Open(ctx, set.ID()+"/manifest.json"); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("a manifest was written: %v", err)
	}
	// A manifest whose groups do not cover the slots is refused.
	m := testManifest()
	m.Groups = map[string]backup.GroupPoint{"g1": testGroups["g1"]}
	if err := set.Finish(ctx, m); err == nil || !strings.Contains(err.Error(), `group "g2" is not among the manifest's groups`) {
		t.Fatalf("finish with a group missing: %v", err)
	}
}

func TestListIgnoresOtherObjects(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir(), backup.StoreOptions{})
	putObject(t, store, "README", []byte("not a backup"))
	putObject(t, store, "notes/x", []byte("not a backup"))
	putObject(t, store, "20261202T143000Z-a1b2c3/slot-0000.tyb", []byte("partial"))
	infos, err := backup.List(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID != "20261202T143000Z-a1b2c3" || infos[0].Complete || !errors.Is(infos[0].Err, backup.ErrIncomplete) ||
		!infos[0].Time.Equal(time.Date(2026, 12, 2, 14, 30, 0, 0, time.UTC)) || infos[0].Size != 7 {
		t.Fatalf("list: %+v", infos)
	}
}

func TestIDs(t *testing.T) {
	at := time.Date(2026, 12, 2, 14, 30, 0, 0, time.FixedZone("CET", 3600))
	id := backup.NewID(at)
	if !strings.HasPrefix(id, "20261202T133000Z-") || len(id) != len("20261202T133000Z-a1b2c3") {
		t.Fatalf("NewID = %q", id)
	}
	if got, err := backup.ParseID(id); err != nil || !got.Equal(at) {
		t.Fatalf("ParseID(%q) = %v, %v", id, got, err)
	}
	for _, bad := range []string{"", "x", "20261202T133000Z", "20261202T133000Z-a1b2c", "20261202T133000Z-A1B2C3", "20261302T133000Z-a1b2c3", "20261202T133000Z-a1b2cg"} {
		if _, err := backup.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q): no error", bad)
		}
	}
	for ref, want := range map[string][2]string{
		"/backups/20261202T143000Z-a1b2c3":        {"/backups", "20261202T143000Z-a1b2c3"},
		"/backups/20261202T143000Z-a1b2c3/":       {"/backups", "20261202T143000Z-a1b2c3"},
		"file:///b/20261202T143000Z-a1b2c3":       {"file:///b", "20261202T143000Z-a1b2c3"},
		"s3://bucket/20261202T143000Z-a1b2c3":     {"s3://bucket", "20261202T143000Z-a1b2c3"},
		"s3://bucket/p/q/20261202T143000Z-a1b2c3": {"s3://bucket/p/q", "20261202T143000Z-a1b2c3"},
	} {
		dest, id, err := backup.ParseSetRef(ref)
		if err != nil || dest != want[0] || id != want[1] {
			t.Errorf("ParseSetRef(%q) = %q, %q, %v; want %q", ref, dest, id, err, want)
		}
	}
	for _, bad := range []string{"", "/backups", "20261202T143000Z-a1b2c3", "s3://20261202T143000Z-a1b2c3", "/backups/latest"} {
		if _, _, err := backup.ParseSetRef(bad); err == nil {
			t.Errorf("ParseSetRef(%q): no error", bad)
		}
	}
}
