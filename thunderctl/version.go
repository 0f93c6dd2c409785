package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// buildInfo is what `thunderctl version` prints and every daemon logs at
// start: the module version, and the git commit and its date, which the go
// command stamps into binaries built from a checkout.
type buildInfo struct {
	Version, Commit, Date string
	Modified              bool // built from a checkout with uncommitted changes
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)", Commit: "unknown", Date: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
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
	return b
}

func (b buildInfo) String() string {
	commit := b.Commit
	if b.Modified && !strings.HasSuffix(b.Version, "+dirty") {
		commit += " (modified)"
	}
	return fmt.Sprintf("thunderctl %s, commit %s, %s", b.Version, commit, b.Date)
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
