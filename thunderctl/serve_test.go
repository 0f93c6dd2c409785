package main

import "testing"

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1GiB": 1 << 30, "512MiB": 512 << 20, "64KiB": 64 << 10, "1000B": 1000, "12345": 12345} {
		if got, err := parseMemoryLimit(in); err != nil || got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1TB", "-1MiB", "1.5GiB", "GiB", "99999999999GiB"} {
		if _, err := parseMemoryLimit(in); err == nil {
			t.Errorf("parseMemoryLimit(%q) accepted", in)
		}
	}
}
