package main

import (
	"cmp"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// Set with -ldflags -X by `make build` and `make release`, which stamp the
// git state themselves: builds made with -buildvcs=false, or outside a
// checkout, carry no vcs settings. They win over the build info.
var (
	version  string // -X main.version=v1.2.3
	commit   string // -X main.commit=<40 hex digits>
	date     string // -X main.date=<the commit's time, RFC 3339 UTC>
	modified string // -X main.modified=true: built with uncommitted changes
)

// buildInfo is what `thunderctl version` prints and every daemon logs at
// start: the module version, and the git commit and its date.
type buildInfo struct {
	Version, Commit, Date string
	Modified              bool // built from a checkout with uncommitted changes
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)", Commit: "unknown", Date: "unknown"}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" {
			b.Version = v
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.Date = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	b.Version, b.Commit, b.Date = cmp.Or(version, b.Version), cmp.Or(commit, b.Commit), cmp.Or(date, b.Date)
	if modified != "" {
		b.Modified = modified == "true"
	}
	return b
}

func (b buildInfo) String() string {
	rev := b.Commit
	if b.Modified && !strings.HasSuffix(b.Version, "+dirty") {
		rev += " (modified)"
	}
	return fmt.Sprintf("thunderctl %s, commit %s, %s", b.Version, rev, b.Date)
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:   "version",
		Usage:  "print the version, git commit and its date",
		Action: printVersion,
	}
}

func printVersion(c *cli.Context) error {
	_, err := fmt.Fprintln(c.App.Writer, readBuildInfo())
	return err
}
