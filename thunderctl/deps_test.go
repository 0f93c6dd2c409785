package main

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBinaryDoesNotLinkTesting keeps test helpers out of the binary: a
// package that imports testing registers its flags and bloats thunderctl.
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gotool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if slices.Contains(strings.Fields(string(out)), "testing") {
		t.Fatal("thunderctl links the testing package; move the test helper that imports it into a test-only package")
	}
}
