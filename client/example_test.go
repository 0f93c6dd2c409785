package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
)

// Connect through ZooKeeper, write a key and read it back. One Close
// releases the connections and the ZooKeeper session.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "zk1:2181,zk2:2181,zk3:2181", "default", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.Put(ctx, []byte("user:1"), []byte("ada")); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, []byte("user:1"))
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("no such user")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("user:1 = %s\n", v)
	}
}

// Every way the cluster can be out of reach matches ErrUnavailable: here
// no ZooKeeper listens at the address, and FailFast gives up at once
// instead of retrying until the context ends.
func ExampleDial_unavailable() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.Dial(ctx, "127.0.0.1:1", "default", client.Options{FailFast: true})
	fmt.Println("unavailable:", errors.Is(err, client.ErrUnavailable))
	// Output: unavailable: true
}

// The client logs nothing unless given a logger; this one also receives
// the ZooKeeper session's events. ReadSecondary spreads reads over the
// secondaries, which may return stale values.
func ExampleOptions() {
	opts := client.Options{
		Timeout:  5 * time.Second,
		ReadFrom: client.ReadSecondary,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	c, err := client.Dial(context.Background(), "zk1:2181", "default", opts)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// Visit the keys with a prefix, in key order across the whole cluster.
func ExampleClient_Scan() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "zk1:2181", "default", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	err = c.Scan(ctx, client.ScanOptions{Prefix: []byte("user:"), Limit: 100}, func(key, value []byte) error {
		fmt.Printf("%s\t%s\n", key, value)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Read the routes from the coordinators instead of ZooKeeper: useful where
// clients may not reach ZooKeeper. New leaves the route source to the
// caller; CoordinatorRoutes holds nothing open.
func ExampleNew() {
	ctx := context.Background()
	c, err := client.New(ctx, client.CoordinatorRoutes([]string{"10.0.0.1:7000", "10.0.0.2:7000"}, nil), client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
