// Command s3server is a real S3-compatible HTTP server for tests: gofakes3
// with its in-memory backend on a loopback port. It creates the buckets
// named by -bucket, prints "listening on http://ADDR" once it accepts
// connections, and serves until killed. internal/s3test builds and runs it;
// nothing in the product imports gofakes3.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	buckets := flag.String("bucket", "", "comma-separated buckets to create")
	flag.Parse()
	if err := run(*addr, *buckets); err != nil {
		fmt.Fprintln(os.Stderr, "s3server:", err)
		os.Exit(1)
	}
}

func run(addr, buckets string) error {
	backend := s3mem.New()
	for _, b := range strings.Split(buckets, ",") {
		if b == "" {
			continue
		}
		if err := backend.CreateBucket(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", l.Addr())
	return http.Serve(l, faker.Server())
}
