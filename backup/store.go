package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// Store is where backups live: a flat namespace of objects whose names are
// slash-separated relative paths ("20261202T143000Z-a1b2c3/slot-0017.tyb").
// OpenStore returns one for a directory or an S3 bucket. Every error is one
// line naming the destination, the operation and the object:
//
//	backup store s3://b/nightly: put 20261202T143000Z-a1b2c3/slot-0017.tyb: …
type Store interface {
	// Put stores r's bytes under name, replacing any object there. The
	// object is durable when Put returns nil; if Put fails (r's error, ctx,
	// the destination) nothing new lists under name and an object that was
	// there before is still there, unchanged. r is streamed: memory stays
	// bounded whatever its size.
	Put(ctx context.Context, name string, r io.Reader) error
	// Open streams the object. An error wrapping ErrNotFound means there is
	// no such object.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the objects whose names start with prefix, sorted by
	// name. An object being written by Put is not listed until Put returns.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes the object; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// String is the destination as the operator wrote it, normalised:
	// "/backups" or "s3://bucket/prefix".
	String() string
}

// Object is one entry of Store.List.
type Object struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// ErrNotFound: Store.Open found no object under the name.
var ErrNotFound = errors.New("no such object")

// StoreOptions configure OpenStore. The zero value is usable: directories
// need nothing, and S3 means AWS with credentials from the environment.
type StoreOptions struct {
	// S3Endpoint is the S3 service for s3:// destinations: a URL
	// ("https://minio.example:9000"; "http://" is allowed, for tests and
	// private networks) or a host name (HTTPS). "" means the
	// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL environment variable, or AWS
	// when neither is set.
	S3Endpoint string
	// S3PartSize is the size of the parts a Put uploads, and so of the one
	// buffer it holds; an object can have at most 10000 parts. 0 means
	// 16 MiB (objects up to 160 GiB); at least 5 MiB.
	S3PartSize int64
}

// OpenStore opens the destination dest:
//
//   - "/backups" or "file:///backups": a directory, which must exist;
//   - "s3://bucket/prefix" (prefix optional): objects under prefix/ in an
//     existing bucket of an S3-compatible service, with credentials from
//     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN
//     (anonymous when unset) and the region from AWS_REGION.
//
// It checks that the directory or bucket is there, so a typo fails here
// with a clear error rather than at the first write.
func OpenStore(ctx context.Context, dest string, opts StoreOptions) (Store, error) {
	d, err := parseDest(dest)
	if err == nil {
		var s store
		if d.dir != "" {
			s, err = openDir(d.dir)
		} else {
			s, err = openS3(ctx, d, opts)
		}
		if err == nil {
			return checked{s}, nil
		}
	}
	if dest == "" {
		dest = `""`
	}
	return nil, fmt.Errorf("backup store %s: %w", dest, err)
}

// destination is a parsed destination: a directory, or a bucket and prefix.
type destination struct {
	dir    string // a directory when set, else S3:
	bucket string
	prefix string // "" or a valid object name
}

// parseDest checks the form of dest without touching what it names.
func parseDest(dest string) (destination, error) {
	switch {
	case dest == "":
		return destination{}, errors.New("no destination given")
	case strings.HasPrefix(dest, "s3://"):
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(dest, "s3://"), "/")
		prefix = strings.Trim(prefix, "/")
		if bucket == "" {
			return destination{}, errors.New("no bucket (want s3://bucket/prefix)")
		}
		if prefix != "" && checkName(prefix) != nil {
			return destination{}, fmt.Errorf("invalid prefix %q", prefix)
		}
		return destination{bucket: bucket, prefix: prefix}, nil
	case strings.HasPrefix(dest, "file://"):
		u, err := url.Parse(dest)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return destination{}, errors.New("want file:///absolute/path")
		}
		return destination{dir: u.Path}, nil
	case strings.Contains(dest, "://"):
		return destination{}, errors.New("unknown scheme (want a directory, file:// or s3://)")
	}
	return destination{dir: dest}, nil
}

// store is what an implementation provides; checked validates names and
// formats errors once for all of them.
type store interface {
	put(ctx context.Context, name string, r io.Reader) error
	open(ctx context.Context, name string) (io.ReadCloser, error)
	list(ctx context.Context, prefix string) ([]Object, error)
	delete(ctx context.Context, name string) error
	String() string
}

type checked struct{ s store }

func (c checked) String() string { return c.s.String() }

func (c checked) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return c.fail("put", name, err)
	}
	return c.fail("put", name, c.s.put(ctx, name, r))
}

func (c checked) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, c.fail("open", name, err)
	}
	rc, err := c.s.open(ctx, name)
	if err != nil {
		return nil, c.fail("open", name, err)
	}
	return readCloser{rc, c, name}, nil
}

func (c checked) List(ctx context.Context, prefix string) ([]Object, error) {
	objs, err := c.s.list(ctx, prefix)
	if err != nil {
		return nil, c.fail("list", prefix, err)
	}
	return objs, nil
}

func (c checked) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return c.fail("delete", name, err)
	}
	return c.fail("delete", name, c.s.delete(ctx, name))
}

// fail wraps err (nil stays nil) in the store's one-line form.
func (c checked) fail(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if name != "" {
		op += " " + name
	}
	return fmt.Errorf("backup store %s: %s: %w", c.s, op, oneLine(err))
}

// readCloser gives errors met while reading an object the store's form.
type readCloser struct {
	io.ReadCloser
	c    checked
	name string
}

func (r readCloser) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = r.c.fail("read", r.name, err)
	}
	return n, err
}

// checkName accepts relative slash-separated names without empty, "." or
// ".." elements; elements starting with "." are reserved for the directory
// store's temporary files.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty object name")
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || strings.HasPrefix(el, ".") || strings.ContainsAny(el, "\\\x00") {
			return fmt.Errorf("invalid object name %q", name)
		}
	}
	return nil
}

// oneLine keeps an error on one line (some services put newlines in their
// messages), keeping what it wraps for errors.Is.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n") {
		return err
	}
	return lineError{strings.Join(strings.Fields(msg), " "), err}
}

type lineError struct {
	msg string
	err error
}

func (e lineError) Error() string { return e.msg }
func (e lineError) Unwrap() error { return e.err }

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// stager is a store that can make an object durable later than it is
// written: a staged object lists and reads at once, but may not survive
// a crash until syncObjects returned for it. A backup stages its slot
// files, syncs them in rounds while others are written, and Puts its
// manifest once all are synced.
type stager interface {
	stage(name string) (*stagedFile, error)
	syncObjects(names []string) error
}

// objectWriter is one object being written: commit stores it; abort gives
// it up and returns the store's own error, if it failed first.
type objectWriter interface {
	io.Writer
	commit() error
	abort(cause error) error
}

// create starts writing the object name. staged says that it is not
// durable once committed, until syncObjects returns for it; a store that
// cannot stage streams it through Put, durable once committed.
func create(ctx context.Context, s Store, name string) (w objectWriter, staged bool, err error) {
	c, ok := s.(checked)
	st, canStage := c.s.(stager)
	if !ok || !canStage {
		return startPut(ctx, s, name), false, nil
	}
	if err := checkName(name); err != nil {
		return nil, false, c.fail("put", name, err)
	}
	sf, err := st.stage(name)
	if err != nil {
		return nil, false, c.fail("put", name, err)
	}
	return checkedFile{sf, c, name}, true, nil
}

// syncObjects makes staged objects of s durable.
func syncObjects(s Store, names []string) error {
	c := s.(checked) // only a checked store stages
	return c.fail("sync", "", c.s.(stager).syncObjects(names))
}

// checkedFile gives a staged file's errors the store's form.
type checkedFile struct {
	sf   *stagedFile
	c    checked
	name string
}

func (f checkedFile) Write(p []byte) (int, error) {
	n, err := f.sf.Write(p)
	return n, f.c.fail("put", f.name, err)
}

func (f checkedFile) commit() error { return f.c.fail("put", f.name, f.sf.commit()) }

func (f checkedFile) abort(error) error {
	f.sf.abort()
	return nil
}

// pipePut streams what is written into a Put of its own goroutine.
type pipePut struct {
	pw     *io.PipeWriter
	stored chan error
}

func startPut(ctx context.Context, s Store, name string) *pipePut {
	pr, pw := io.Pipe()
	p := &pipePut{pw: pw, stored: make(chan error, 1)}
	// Owned by the pipePut: commit and abort wait for it. Background
	// work, as the backup writing the object is.
	sysproc.GoBackground(func() {
		err := s.Put(ctx, name, pr)
		// Unblock the writer whatever Put did; it reports Put's error.
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		p.stored <- err
	})
	return p
}

func (p *pipePut) Write(b []byte) (int, error) { return p.pw.Write(b) }

func (p *pipePut) commit() error {
	p.pw.Close() // the object ends here
	return <-p.stored
}

// abort fails the Put with cause, so nothing new is stored; Put's error
// carries cause when that is what stopped it.
func (p *pipePut) abort(cause error) error {
	p.pw.CloseWithError(cause)
	return <-p.stored
}
