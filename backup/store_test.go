package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/backup/internal/storetest"
	"github.com/thunderyurts/thunderyurts/internal/s3test"
)

func openStore(t testing.TB, dest string, opts backup.StoreOptions) backup.Store {
	t.Helper()
	s, err := backup.OpenStore(context.Background(), dest, opts)
	if err != nil {
		t.Fatalf("open store %s: %v", dest, err)
	}
	return s
}

func TestDirStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) backup.Store {
		return openStore(t, t.TempDir(), backup.StoreOptions{})
	})
}

func TestFileURLStore(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, "file://"+dir, backup.StoreOptions{})
	if s.String() != dir {
		t.Fatalf("String() = %q, want %q", s, dir)
	}
	if err := s.Put(context.Background(), "a/b", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b")); err != nil {
		t.Fatalf("the object is not a file under the directory: %v", err)
	}
}

// s3Options makes the suite's large object take several parts.
func s3Options(srv *s3test.Server) backup.StoreOptions {
	return backup.StoreOptions{S3Endpoint: srv.Endpoint, S3PartSize: 5 << 20}
}

func TestS3Store(t *testing.T) {
	srv := s3test.Start(t, "backups")
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) backup.Store {
		// Each test under a prefix of its own in the one bucket.
		return openStore(t, fmt.Sprintf("s3://backups/run/%d", n.Add(1)), s3Options(srv))
	})
}

func TestS3StoreBucketRoot(t *testing.T) {
	// A bucket for each test.
	var buckets []string
	for i := range 12 {
		buckets = append(buckets, fmt.Sprintf("root%d", i))
	}
	srv := s3test.Start(t, buckets...)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) backup.Store {
		return openStore(t, "s3://"+buckets[n.Add(1)], s3Options(srv))
	})
}

func TestOpenStoreErrors(t *testing.T) {
	srv := s3test.Start(t, "exists")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dest string
		opts backup.StoreOptions
		want string
	}{
		{"", backup.StoreOptions{}, `backup store "": no destination given`},
		{"/does/not/exist", backup.StoreOptions{}, "backup store /does/not/exist: directory does not exist (create it first)"},
		{file, backup.StoreOptions{}, "backup store " + file + ": not a directory"},
		{"file://host/x", backup.StoreOptions{}, "backup store file://host/x: want file:///absolute/path"},
		{"gs://bucket", backup.StoreOptions{}, "backup store gs://bucket: unknown scheme (want a directory, file:// or s3://)"},
		{"s3://", backup.StoreOptions{}, "backup store s3://: no bucket (want s3://bucket/prefix)"},
		{"s3://missing/p", backup.StoreOptions{S3Endpoint: srv.Endpoint}, "backup store s3://missing/p: bucket missing does not exist at " + strings.TrimPrefix(srv.Endpoint, "http://")},
		{"s3://exists/a/../b", backup.StoreOptions{S3Endpoint: srv.Endpoint}, `backup store s3://exists/a/../b: invalid prefix "a/../b"`},
		{"s3://exists", backup.StoreOptions{S3Endpoint: "ftp://x"}, `S3 endpoint "ftp://x": want http(s)://host[:port]`},
		{"s3://exists", backup.StoreOptions{S3Endpoint: srv.Endpoint, S3PartSize: 1 << 20}, "below S3's minimum of 5 MiB"},
	} {
		_, err := backup.OpenStore(context.Background(), tc.dest, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("OpenStore(%q): %v, want one line containing %q", tc.dest, err, tc.want)
		}
	}
}

func TestDirStoreUnwritable(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, backup.StoreOptions{})
	// A file where the set's directory should be (permissions do not stop
	// root, which the tests may run as).
	if err := os.WriteFile(filepath.Join(dir, "set"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := s.Put(context.Background(), "set/slot-0001.tyb", strings.NewReader("x"))
	if err == nil || !strings.HasPrefix(err.Error(), "backup store "+dir+": put set/slot-0001.tyb: ") {
		t.Fatalf("put into a file: %v", err)
	}
	if errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("put: %v is not a missing object", err)
	}
}

// A full disk fails the Put, leaves no temporary file behind, keeps the
// object that was there, and the next Put that fits works.
func TestDirStoreFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs for a full disk: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	ctx := context.Background()
	s := openStore(t, dir, backup.StoreOptions{})
	putObject(t, s, "set/kept", []byte("old"))
	big := bytes.Repeat([]byte("x"), 3<<20)
	for _, name := range []string{"set/big", "set/kept"} {
		err := s.Put(ctx, name, bytes.NewReader(big))
		if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "backup store "+dir+": put "+name+": ") {
			t.Fatalf("put %s on a full disk: %v", name, err)
		}
	}
	if got := string(getObject(t, s, "set/kept")); got != "old" {
		t.Fatalf("a failed overwrite left %q", got)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "set"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "kept" {
		t.Fatalf("the directory holds %v (%v), want only kept", entries, err)
	}
	putObject(t, s, "set/small", []byte("fits"))
}

// A directory that vanishes after it was opened is an error, not an empty
// list of backups.
func TestDirStoreVanished(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, backup.StoreOptions{})
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if objs, err := s.List(context.Background(), ""); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("list a vanished directory: %v, %v; want an error", objs, err)
	}
	if _, err := backup.List(context.Background(), s); err == nil {
		t.Fatal("backup.List of a vanished directory: no error")
	}
	// Nor is it created again: it may be an unmounted file system.
	if err := s.Put(context.Background(), "set/slot-0000.tyb", strings.NewReader("x")); err == nil {
		t.Fatal("put into a vanished directory: no error")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the vanished directory was created again: %v", err)
	}
}
