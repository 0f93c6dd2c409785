package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// These tests run the real binary (thunderctlBin, see TestMain) and need no
// ZooKeeper: bad input must be refused before anything is dialled.

// usageRun is one run of the binary.
type usageRun struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// runThunderctl runs the binary with no THUNDER_* variables from the test's
// environment but env, and with stdin closed.
func runThunderctl(t *testing.T, env []string, args ...string) usageRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, thunderctlBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "THUNDER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := usageRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run thunderctl %q: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestUsageErrors: every bad command line exits 2 with one line on stderr
// that names the problem and where to read the usage, and does so before
// connecting anywhere. The environment sets a 30 s timeout, so a command
// that dialled and retried instead would blow the 10 s bound by far; the
// bound is not a speed assertion.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badConf := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(badConf, []byte("# ok so far\nzk = 127.0.0.1:2181\nzkk = 127.0.0.1:2182\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rangeConf := filepath.Join(dir, "range.conf")
	if err := os.WriteFile(rangeConf, []byte("slots = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	dead := deadAddr(t)
	cases := []struct {
		name string
		args []string
		want string   // in the error line
		env  []string // THUNDER_TIMEOUT=30s when nil
	}{
		// Malformed --zk, --coord, --cluster, --config: refused, not retried.
		{"empty zk", []string{"--zk", "", "get", "k"}, `--zk ""`, nil},
		{"zk colons", []string{"--zk", "::::", "get", "k"}, `--zk "::::"`, nil},
		{"zk port not a number", []string{"--zk", "host:notaport", "get", "k"}, `port "notaport"`, nil},
		{"zk port out of range", []string{"--zk", ":99999", "get", "k"}, `port "99999"`, nil},
		{"zk one bad host of two", []string{"--zk", dead + ",nohost:0", "get", "k"}, `port "0"`, nil},
		{"zk bad chroot", []string{"--zk", dead + "/a//b", "get", "k"}, "chroot", nil},
		{"zk bad chroot, admin", []string{"--zk", dead + "/a/../b", "admin", "status"}, "chroot", nil},
		{"bad coord", []string{"--coord", "bad", "get", "k"}, `--coord "bad"`, nil},
		{"coord empty port", []string{"--coord", "127.0.0.1:7000,127.0.0.1:", "get", "k"}, `port ""`, nil},
		{"cluster with slash", []string{"--cluster", "a/b", "get", "k"}, `--cluster "a/b"`, nil},
		{"cluster dot dot", []string{"--cluster", "..", "get", "k"}, `--cluster ".."`, nil},
		{"cluster empty", []string{"--cluster", "", "admin", "slots"}, `--cluster ""`, nil},
		{"config is a directory", []string{"--config", dir, "get", "k"}, "is a directory", nil},
		{"config missing", []string{"--config", filepath.Join(dir, "missing"), "get", "k"}, "no such file", nil},
		{"config unknown key", []string{"--config", badConf, "get", "k"}, `line 3: unknown flag "zkk"`, nil},
		{"config value out of range", []string{"--config", rangeConf, "serve", "coord"}, "--slots 0: want 1 to 16384", nil},
		{"serve data without group", []string{"serve", "data", "--dir", data}, "--group is required", nil},
		{"serve data without dir", []string{"serve", "data", "--group", "g1"}, "--dir is required", nil},
		{"serve data bad group", []string{"serve", "data", "--group", "a/b", "--dir", data}, `--group "a/b"`, nil},
		{"serve data bad memory limit", []string{"serve", "data", "--group", "g1", "--dir", data, "--memory-limit", "1TB"}, `--memory-limit "1TB": want a size`, nil},
		{"admin failover without group", []string{"admin", "failover"}, "--group is required", nil},
		// Numbers out of range.
		{"min-insync -1", []string{"serve", "data", "--group", "g1", "--dir", data, "--min-insync", "-1"}, "--min-insync -1: want 1 to 16", nil},
		{"max-lag -5s", []string{"serve", "data", "--group", "g1", "--dir", data, "--max-lag", "-5s"}, "--max-lag -5s", nil},
		{"max-value-size 0", []string{"serve", "data", "--group", "g1", "--dir", data, "--max-value-size", "0"}, "--max-value-size 0", nil},
		{"slots 0", []string{"serve", "coord", "--slots", "0"}, "--slots 0: want 1 to 16384", nil},
		{"replication-factor -3", []string{"serve", "coord", "--replication-factor", "-3"}, "--replication-factor -3", nil},
		{"session-timeout 0s", []string{"serve", "coord", "--session-timeout", "0s"}, "--session-timeout 0s", nil},
		{"assign-delay -1s", []string{"serve", "coord", "--assign-delay", "-1s"}, "--assign-delay -1s", nil},
		{"bad listen", []string{"serve", "coord", "--listen", "nowhere"}, `--listen "nowhere"`, nil},
		{"bad http", []string{"serve", "coord", "--http", "127.0.0.1:70000"}, `--http "127.0.0.1:70000"`, nil},
		{"timeout 0s", []string{"--timeout", "0s", "get", "k"}, "--timeout 0s: want 1ms to 24h", nil},
		{"timeout 0s after the command", []string{"get", "--timeout", "0s", "k"}, "--timeout 0s", nil},
		{"timeout from the environment", []string{"admin", "status"}, "--timeout -1s", []string{"THUNDER_TIMEOUT=-1s"}},
		{"slots from the environment", []string{"serve", "coord"}, "--slots 99999", []string{"THUNDER_SLOTS=99999"}},
		{"scan limit -1", []string{"scan", "--limit", "-1"}, "--limit -1: want 0 or more", nil},
		{"bench reads 101", []string{"bench", "--reads", "101"}, "--reads 101: want 0 to 100", nil},
		{"bench clients 0", []string{"bench", "--clients", "0"}, "--clients 0", nil},
		{"bench procs -1", []string{"bench", "--procs", "-1"}, "--procs -1", nil},
		{"bench key-slots backwards", []string{"bench", "--key-slots", "0-3,9-5"}, `--key-slots "0-3,9-5": "9-5" is not a slot or a range FIRST-LAST`, nil},
		{"dev groups 0", []string{"dev", "--groups", "0"}, "--groups 0: want 1 to 16", nil},
		{"dev slots 0", []string{"dev", "--slots", "0"}, "--slots 0", nil},
		// Malformed values.
		{"duration without unit", []string{"--timeout", "1", "get", "k"}, "--timeout 1: want a duration like 1s", nil},
		{"int not a number", []string{"serve", "coord", "--slots", "many"}, "--slots many: want a whole number", nil},
		{"bad acks", []string{"serve", "data", "--group", "g1", "--dir", data, "--acks", "2"}, `--acks "2": want all or 1`, nil},
		{"bad output", []string{"admin", "status", "-o", "yaml"}, `--output "yaml"`, nil},
		{"bad read-from", []string{"--read-from", "nearest", "get", "k"}, `--read-from "nearest"`, nil},
		{"bad log level", []string{"--log-level", "loud", "get", "k"}, `--log-level "loud": want debug, info, warn or error`, nil},
		{"bad log format", []string{"--log-format", "xml", "get", "k"}, `--log-format "xml": want text or json`, nil},
		{"flag without value", []string{"get", "k", "--timeout"}, "--timeout needs a value", nil},
		{"bad duration after the key", []string{"get", "k", "--timeout", "1"}, "--timeout 1: want a duration like 1s", nil},
		{"unknown flag after the key", []string{"get", "k", "--bogus"}, "unknown flag --bogus", nil},
		{"unknown short flag", []string{"put", "k", "v", "-x"}, "unknown flag -x", nil},
		{"flag of another command", []string{"put", "k", "v", "--read-from", "any"}, "unknown flag --read-from", nil},
		{"arguments after --", []string{"get", "--", "k", "--timeout", "1s"}, "get takes 1 argument(s): KEY", nil},
		{"flag without value after an argument", []string{"admin", "backup", "verify", "/b/20261202T143000Z-a1b2c3", "--timeout"}, "--timeout needs a value", nil},
		{"completion without shell", []string{"completion"}, "completion takes one argument: bash or zsh", nil},
		{"completion for fish", []string{"completion", "fish"}, `completion "fish": want bash or zsh`, nil},
		// Admin paths stay inside the cluster.
		{"admin zk escapes", []string{"admin", "zk", "/../../zookeeper"}, "leaves the cluster's namespace /thunderyurts/default", nil},
		{"admin zk into another cluster", []string{"admin", "zk", "../other"}, "leaves the cluster's namespace", nil},
		{"admin zk two paths", []string{"admin", "zk", "a", "b"}, "at most one argument", nil},
		// Commands, arguments, flags.
		{"no command", []string{}, "a command is required", nil},
		{"no admin command", []string{"admin"}, "a command is required: status, zk, failover, node, backup, restore, slots", nil},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`, nil},
		{"unknown admin command", []string{"admin", "frob"}, `unknown command "admin frob"`, nil},
		{"unknown flag", []string{"get", "--bogus", "k"}, "unknown flag --bogus", nil},
		{"unknown global flag", []string{"--bogus", "get", "k"}, "unknown flag --bogus", nil},
		{"missing argument", []string{"get"}, "get takes 1 argument(s): KEY", nil},
		{"arguments to serve coord", []string{"serve", "coord", "extra"}, "serve coord takes no arguments", nil},
		{"arguments to version", []string{"version", "extra"}, "version takes no arguments", nil},
		{"empty key", []string{"put", "", "v"}, "empty key", nil},
		{"help for no command", []string{"help", "nosuch"}, `no command "nosuch"`, nil},
		{"help for no subcommand", []string{"help", "admin", "nosuch"}, `no command "admin nosuch"`, nil},
	}
	hint := regexp.MustCompile(`\(see 'thunderctl help[a-z ]*'\)\n$`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = []string{"THUNDER_TIMEOUT=30s"}
			}
			r := runThunderctl(t, env, tc.args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "thunderctl: ") || !hint.MatchString(r.stderr) {
				t.Errorf("stderr %q, want one line: thunderctl: ... (see 'thunderctl help ...')", r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q does not say %q", r.stderr, tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing (no help page)", r.stdout)
			}
			if r.took > 10*time.Second {
				t.Errorf("took %s: the command retried instead of refusing its input", r.took)
			}
		})
	}
}

// TestUsageZooKeeperRefused: when every ZooKeeper server refuses the
// connection a command fails (exit 1) at once rather than retrying for its
// whole --timeout (60 s here; the 30 s bound is far from both).
func TestUsageZooKeeperRefused(t *testing.T) {
	zk := deadAddr(t) + "," + deadAddr(t)
	for _, args := range [][]string{{"get", "k"}, {"admin", "status"}} {
		r := runThunderctl(t, nil, append([]string{"--zk", zk, "--timeout", "60s"}, args...)...)
		if r.code != exitFailed || strings.Count(r.stderr, "\n") != 1 ||
			!strings.Contains(r.stderr, "zookeeper "+zk+" unreachable") || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("%v: exit %d, stderr %q; want 1 and one line naming the servers and the refusal", args, r.code, r.stderr)
		}
		if r.took > 30*time.Second {
			t.Errorf("%v took %s: it waited for the timeout", args, r.took)
		}
	}
}

// TestUsageLogFlags: --log-level and --log-format apply to the client
// commands too; by default they keep stderr to the one error line.
func TestUsageLogFlags(t *testing.T) {
	zk := deadAddr(t)
	r := runThunderctl(t, nil, "--zk", zk, "get", "k")
	if strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("default log level: stderr %q, want only the error line", r.stderr)
	}
	r = runThunderctl(t, nil, "--zk", zk, "--log-level", "debug", "--log-format", "json", "get", "k")
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != exitFailed || len(lines) < 2 {
		t.Fatalf("--log-level debug: exit %d, stderr %q; want log lines before the error", r.code, r.stderr)
	}
	for _, l := range lines[:len(lines)-1] {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["level"] == nil {
			t.Errorf("--log-format json: line %q is not a JSON log record (%v)", l, err)
		}
	}
}

// versionLine is what version prints: the module version ("(devel)"
// without a release tag), the commit and its date, which make build and
// TestMain's build stamp.
var versionLine = regexp.MustCompile(`^thunderctl (\(devel\)|v\S+), commit [0-9a-f]{40}( \(modified\))?, \d{4}-\d\d-\d\dT\S+Z\n$`)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runThunderctl(t, nil, args...)
		if r.code != exitOK || r.stderr != "" || !versionLine.MatchString(r.stdout) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want one version line", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestVersionLoggedByDaemon: a daemon's first log line says what runs.
func TestVersionLoggedByDaemon(t *testing.T) {
	r := runThunderctl(t, nil, "serve", "coord", "--zk", deadAddr(t), "--timeout", "1s", "--listen", deadAddr(t))
	first, _, _ := strings.Cut(r.stderr, "\n")
	if r.code != exitFailed || !strings.Contains(first, `msg="starting serve coord" version=`) || !strings.Contains(first, " commit=") {
		t.Errorf("exit %d, first line %q; want 1 and a start line with version and commit", r.code, first)
	}
}

// TestUsageHelp: help, for the program and any command, goes to stdout and
// exits 0.
func TestUsageHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "COMMANDS:"},
		{[]string{"--help"}, "COMMANDS:"},
		{[]string{"-h"}, "COMMANDS:"},
		{[]string{"help", "get"}, "thunderctl get [command options] KEY"},
		{[]string{"get", "--help"}, "thunderctl get [command options] KEY"},
		{[]string{"help", "admin"}, "failover"},
		{[]string{"help", "admin", "zk"}, "thunderctl admin zk [command options] [PATH]"},
		{[]string{"help", "serve", "data"}, "--min-insync N"},
		{[]string{"serve", "data", "--help"}, "--group NAME"},
	} {
		r := runThunderctl(t, nil, tc.args...)
		if r.code != exitOK || r.stderr != "" || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, stdout lacks %q:\n%s", tc.args, r.code, r.stderr, tc.want, r.stdout)
		}
	}
}

// TestUsageConfigExample: the documented example config file is accepted.
func TestUsageConfigExample(t *testing.T) {
	example, err := filepath.Abs("../docs/thunder.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	r := runThunderctl(t, nil, "--config", example, "version")
	if r.code != exitOK || r.stderr != "" {
		t.Errorf("--config %s: exit %d, stderr %q", example, r.code, r.stderr)
	}
}

// TestDataCommandsContract runs the data commands against a cluster: flags
// are taken after the arguments, get and scan escape what is not printable
// in plain output and give the exact bytes in base64 with -o json.
func TestDataCommandsContract(t *testing.T) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	tc.dataNode("data-g1", "g1")
	tc.waitServing(tc.coordCluster(), 30*time.Second)
	must := func(stdin []byte, want int, args ...string) string {
		t.Helper()
		stdout, stderr, code := tc.cli(stdin, args...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d; stderr %q", args, code, want, stderr)
		}
		return stdout
	}
	binary := []byte("a\tb\x00\xff\\z\nend")
	must(binary, 0, "put", "k1", "-", "--timeout", "20s")
	must(nil, 0, "put", "k2", "plain value", "--timeout=20s")
	if got, want := must(nil, 0, "get", "k1", "--timeout", "20s", "--read-from", "primary"), `a\tb\x00\xff\\z\nend`+"\n"; got != want {
		t.Errorf("get k1: %q, want %q", got, want)
	}
	var rec struct{ Key, Value []byte }
	if out := must(nil, 0, "get", "k1", "-o", "json"); json.Unmarshal([]byte(out), &rec) != nil || string(rec.Key) != "k1" || !bytes.Equal(rec.Value, binary) {
		t.Errorf("get k1 -o json: %q decodes to %q=%q, want the exact bytes", out, rec.Key, rec.Value)
	}
	if got, want := must(nil, 0, "scan", "--prefix", "k", "--timeout", "20s"), "k1\t"+`a\tb\x00\xff\\z\nend`+"\nk2\tplain value\n"; got != want {
		t.Errorf("scan: %q, want %q", got, want)
	}
	lines := strings.Split(strings.TrimSuffix(must(nil, 0, "scan", "-o", "json"), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("scan -o json: %d lines, want 2: %q", len(lines), lines)
	}
	if json.Unmarshal([]byte(lines[0]), &rec) != nil || string(rec.Key) != "k1" || !bytes.Equal(rec.Value, binary) {
		t.Errorf("scan -o json: first line %q, want k1 with the exact bytes", lines[0])
	}
	must(nil, 0, "del", "k1", "--timeout", "20s")
	must(nil, exitNotFound, "get", "k1", "--timeout", "20s")
	must(nil, 0, "admin", "group", "weight", "g1", "1", "--timeout", "20s", "-o", "json")
	if _, stderr, code := tc.cli(nil, "admin", "slots", "--zk", deadAddr(t), "--coord", tc.procs["coord-1"].addr); code != exitFailed ||
		!strings.Contains(stderr, "admin slots works on the cluster's state in ZooKeeper (--zk); --coord serves only the data commands") {
		t.Errorf("admin slots with --coord and a dead --zk: exit %d, stderr %q; want 1 saying it needs ZooKeeper", code, stderr)
	}
}
