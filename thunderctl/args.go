package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs moves the flags given after a command's arguments in front
// of them, so that `thunderctl get KEY --timeout 1s` means what it says:
// urfave/cli, like Go's flag package, stops at the first argument. It
// finds the command the way the parser will, and learns from its flag
// definitions which flags take a value. Everything after `--` stays an
// argument; the arguments keep their order and follow a `--`, so a key
// that starts with "-" given after `--` stays a key. A flag whose value is
// missing ends the list, so that the parser reports it.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	flags, cmds := app.Flags, app.Commands
	rest := args[1:]
	// The flags before each command name belong to the level that holds it.
	// A command with subcommands and an action of its own (admin zk) takes
	// arguments when what follows names no subcommand.
	for acts := false; ; {
		i := 0
		for i < len(rest) && isFlag(rest[i]) {
			i += flagWidth(flags, rest[i:])
		}
		if i >= len(rest) {
			return append(out, rest...)
		}
		name := rest[i]
		k := slices.IndexFunc(cmds, func(c *cli.Command) bool { return c.HasName(name) })
		if k < 0 && acts {
			break
		}
		if k < 0 {
			return append(out, rest...) // an argument, or an unknown command the parser reports
		}
		out, rest = append(out, rest[:i+1]...), rest[i+1:]
		flags, cmds, acts = cmds[k].Flags, cmds[k].Subcommands, cmds[k].Action != nil
		if len(cmds) == 0 {
			break
		}
	}
	var moved, positional []string
	for i := 0; i < len(rest); {
		switch arg := rest[i]; {
		case arg == "--":
			positional = append(positional, rest[i+1:]...)
			i = len(rest)
		case isFlag(arg):
			w := flagWidth(flags, rest[i:])
			if i+w > len(rest) {
				return slices.Concat(out, moved, rest[i:])
			}
			moved = append(moved, rest[i:i+w]...)
			i += w
		default:
			positional = append(positional, arg)
			i++
		}
	}
	out = append(out, moved...)
	if len(positional) > 0 {
		out = append(append(out, "--"), positional...)
	}
	return out
}

// isFlag reports whether arg is a flag: "-" alone is an argument
// (standard input), "--" ends the flags, and no flag is named by a digit,
// so "-2" is a number (admin group weight g1 -2 is refused for its value).
func isFlag(arg string) bool {
	return len(arg) > 1 && arg[0] == '-' && arg != "--" && (arg[1] < '0' || arg[1] > '9')
}

// flagWidth is how many arguments the flag at args[0] takes up: 2 for a
// flag that takes a value given as the next argument, else 1. A flag the
// command does not define takes 1; the parser refuses it.
func flagWidth(flags []cli.Flag, args []string) int {
	name := strings.TrimLeft(args[0], "-")
	if strings.Contains(name, "=") {
		return 1
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			if _, isBool := f.(*cli.BoolFlag); isBool {
				return 1
			}
			return 2
		}
	}
	return 1
}
