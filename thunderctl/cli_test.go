package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/thunderyurts/thunderyurts/client"
)

// TestPermuteArgs: the flags after a command's arguments move in front of
// them, each with its value, whatever the command; `--` ends the flags.
func TestPermuteArgs(t *testing.T) {
	app := newApp(nil, io.Discard, io.Discard)
	for _, tc := range []struct{ in, want string }{
		{"get k --timeout 1s", "get --timeout 1s -- k"},
		{"get k --timeout=1s -o json", "get --timeout=1s -o json -- k"},
		{"--zk h:1 get k --cluster c", "--zk h:1 get --cluster c -- k"},
		{"put k - --timeout 1s", "put --timeout 1s -- k -"},
		{"admin backup verify /b/ID -o json", "admin backup verify -o json -- /b/ID"},
		{"admin zk a -r --timeout 2s", "admin zk -r --timeout 2s -- a"},
		{"admin group weight g1 2 --timeout 1s", "admin group weight --timeout 1s -- g1 2"},
		{"serve data --repair --group g --dir d", "serve data --repair --group g --dir d"},
		{"get -- -k --timeout 1s", "get -- -k --timeout 1s"},
		{"get k --timeout -- x", "get --timeout -- -- k x"}, // a value flag takes the next word, as the parser does
		{"get k --timeout", "get --timeout"},                // the parser reports the missing value
		{"get k --bogus", "get --bogus -- k"},
		{"admin group weight g1 -2 -o json", "admin group weight -o json -- g1 -2"}, // a negative number is an argument
		{"frob k --timeout 1s", "frob k --timeout 1s"},                              // not a command: left to the parser
		{"get", "get"},
		{"", ""},
	} {
		in := append([]string{"thunderctl"}, strings.Fields(tc.in)...)
		want := append([]string{"thunderctl"}, strings.Fields(tc.want)...)
		if got := permuteArgs(app, in); !slices.Equal(got, want) {
			t.Errorf("permuteArgs(%q) = %q, want %q", tc.in, got[1:], want[1:])
		}
	}
}

// TestAppendEscaped: printable UTF-8 stays, everything else is escaped, so
// a record is one line that reads back unambiguously.
func TestAppendEscaped(t *testing.T) {
	for in, want := range map[string]string{
		"hello, world":   "hello, world",
		"héllo ✓":        "héllo ✓",
		"a\tb\nc\rd":     `a\tb\nc\rd`,
		`back\slash`:     `back\\slash`,
		"\x00\x01\x7f":   `\x00\x01\x7f`,
		"\xff\xfe":       `\xff\xfe`,
		"zero\u200bwide": `zero\xe2\x80\x8bwide`,
		"":               "",
	} {
		if got := string(appendEscaped(nil, []byte(in))); got != want {
			t.Errorf("appendEscaped(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestErrorLine: package names and parts repeated by wrapping are dropped;
// a usage error names its help.
func TestErrorLine(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("get %q: %w", "k", client.ErrNotFound), `thunderctl: get "k": key not found`},
		{fmt.Errorf("put k: %w", fmt.Errorf("put k: %w", errors.New("coord: coordination service unavailable"))), "thunderctl: put k: coordination service unavailable"},
		{errors.New("no coordinator: all down"), "thunderctl: no coordinator: all down"},
		{errors.New("multi\nline   error"), "thunderctl: multi line error"},
		{&usageError{msg: "--x is required", help: "thunderctl help get"}, "thunderctl: --x is required (see 'thunderctl help get')"},
	} {
		if got := errorLine(tc.err); got != tc.want {
			t.Errorf("errorLine(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestCompletion: the bash script, run by bash, offers the subcommands
// and the flags of the command typed so far; the zsh script names the
// same commands.
func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var script bytes.Buffer
	if code := run([]string{"thunderctl", "completion", "bash"}, nil, &script, io.Discard); code != 0 {
		t.Fatalf("completion bash: exit %d", code)
	}
	for _, tc := range []struct {
		line string // what is typed; the last word is completed
		want []string
		not  []string
	}{
		{"thunderctl ", []string{"serve", "get", "admin", "completion", "--zk"}, []string{"man"}},
		{"thunderctl ad", []string{"admin"}, []string{"get"}},
		{"thunderctl admin ", []string{"status", "backup", "rebalance"}, []string{"get"}},
		{"thunderctl admin backup ", []string{"run", "list", "verify", "schedule"}, nil},
		{"thunderctl get k --ti", []string{"--timeout"}, nil},
		{"thunderctl --zk h:1 put k v --", []string{"--timeout", "--coord"}, []string{"--read-from", "--output"}},
		{"thunderctl serve data --", []string{"--group", "--dir", "--session-timeout"}, []string{"--coord"}},
		{"thunderctl admin status --", []string{"--output", "--zk"}, []string{"--coord"}},
	} {
		words := strings.Split(tc.line, " ")
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, fmt.Sprintf("%q", w))
		}
		prog := fmt.Sprintf("%s\nCOMP_WORDS=(%s); COMP_CWORD=%d; _thunderctl; printf '%%s\\n' \"${COMPREPLY[@]}\"",
			script.String(), strings.Join(quoted, " "), len(words)-1)
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: bash: %v\n%s", tc.line, err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%q: offers %q, want %q among them", tc.line, got, w)
			}
		}
		for _, w := range tc.not {
			if slices.Contains(got, w) {
				t.Errorf("%q: offers %q, which it should not", tc.line, w)
			}
		}
	}
	var zsh bytes.Buffer
	if code := run([]string{"thunderctl", "completion", "zsh"}, nil, &zsh, io.Discard); code != 0 {
		t.Fatalf("completion zsh: exit %d", code)
	}
	for _, w := range []string{"#compdef thunderctl", "compdef _thunderctl thunderctl", `"/admin/backup") cands=(run list verify schedule --help)`} {
		if !strings.Contains(zsh.String(), w) {
			t.Errorf("zsh script lacks %q", w)
		}
	}
	if zshBin, err := exec.LookPath("zsh"); err == nil {
		// Loaded after compinit, it registers itself for thunderctl.
		prog := "autoload -U compinit && compinit -u -D\n" + zsh.String() + "\nprint -r -- ${_comps[thunderctl]}"
		if out, err := exec.Command(zshBin, "-f", "-c", prog).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "_thunderctl" {
			t.Errorf("zsh: %v, %q; want the script to register _thunderctl", err, out)
		}
	}
}

// TestManPage: the man page covers every visible command with its flags,
// and matches the committed docs/man/thunderctl.1 (make man).
func TestManPage(t *testing.T) {
	var page bytes.Buffer
	if code := run([]string{"thunderctl", "man"}, nil, &page, io.Discard); code != 0 {
		t.Fatalf("man: exit %d", code)
	}
	for _, w := range []string{".TH thunderctl 1", "serve", "rebalance", "--base-port", "--read-from", "completion"} {
		if !strings.Contains(page.String(), w) {
			t.Errorf("man page lacks %q", w)
		}
	}
	committed, err := os.ReadFile("../docs/man/thunderctl.1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, page.Bytes()) {
		t.Error("docs/man/thunderctl.1 is out of date: run make man")
	}
}
