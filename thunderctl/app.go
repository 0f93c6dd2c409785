package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
)

// run is the whole program; it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.Run(permuteArgs(app, args))
	if err != nil {
		fmt.Fprintln(stderr, errorLine(err))
	}
	return exitCodeOf(err)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "thunderctl",
		Usage:     "run and operate a ThunderYurts key-value cluster",
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "version", Usage: "print the version, git commit and its date"},
			cli.HelpFlag),
		Commands: []*cli.Command{
			serveCommand(),
			devCommand(),
			getCommand(), putCommand(), delCommand(), scanCommand(),
			benchCommand(),
			adminCommand(),
			versionCommand(),
			completionCommand(),
			helpCommand(),
			manCommand(),
		},
		Description: "Every flag can also be set in the environment, as THUNDER_ and its name in upper case with - as _ (THUNDER_LOG_LEVEL for --log-level), " +
			"or in a config file (--config FILE, lines of flag = value); a flag wins over the environment, " +
			"which wins over the file. Exit codes: 0 success, 1 the operation failed, 2 bad usage or invalid input, " +
			"3 key not found.",
		HideHelpCommand: true, // helpCommand replaces it
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError:    onUsageError,
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				return printVersion(c)
			}
			return unknownCommand(c)
		},
	}
	for _, cmd := range app.Commands {
		prepare(cmd)
	}
	return app
}

// prepare gives every command usage errors that exit 2 with a hint, an
// error for unknown subcommands, and, on leaf commands, the global flags,
// the config file and required flags checked after it, and an error for
// arguments to a command that takes none (no ArgsUsage).
func prepare(cmd *cli.Command) {
	cmd.OnUsageError = onUsageError
	cmd.HideHelpCommand = true
	for _, sub := range cmd.Subcommands {
		prepare(sub)
	}
	// A command with subcommands and an action of its own (admin zk [PATH],
	// admin zk secure) is a leaf too.
	if len(cmd.Subcommands) > 0 && cmd.Action == nil {
		cmd.Action = unknownCommand
		return
	}
	cmd.Flags = append(cmd.Flags, commonFlags()...)
	// urfave/cli checks Required flags before Before, so before the config
	// file could supply them, and prints the whole help page.
	var required []string
	for _, f := range cmd.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Required {
			sf.Required = false
			required = append(required, sf.Name)
		}
	}
	cmd.Before = func(c *cli.Context) error { return completeFlags(c, required) }
	action := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		if cmd.ArgsUsage == "" && c.NArg() > 0 {
			return usageIn(c, "%s takes no arguments", commandPath(c))
		}
		return inCommand(c, action(c))
	}
}

// The errors of Go's flag package, which urfave/cli passes on.
var (
	badFlagValue  = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-(\S+): `)
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(\S+)`)
	flagNoValue   = regexp.MustCompile(`^flag needs an argument: -+(\S+)`)
)

// onUsageError rewrites the flag parser's errors for people: "--timeout 1:
// want a duration like 1s", not "invalid value "1" for flag -timeout: parse
// error".
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if m := badFlagValue.FindStringSubmatch(msg); m != nil {
		want := "invalid value"
		switch lookupFlag(c, m[2]).(type) {
		case *cli.DurationFlag:
			want = "want a duration like 1s"
		case *cli.IntFlag:
			want = "want a whole number"
		case *cli.BoolFlag:
			want = "want true or false"
		}
		return usageIn(c, "--%s %s: %s", m[2], m[1], want)
	}
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		return usageIn(c, "unknown flag %s", flagSpelling(m[1]))
	}
	if m := flagNoValue.FindStringSubmatch(msg); m != nil {
		return usageIn(c, "%s needs a value", flagSpelling(m[1]))
	}
	return usageIn(c, "%s", msg)
}

func lookupFlag(c *cli.Context, name string) cli.Flag {
	flags := c.App.Flags
	if c.Command != nil {
		flags = append(slices.Clip(c.Command.Flags), flags...)
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func unknownCommand(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageIn(c, "unknown command %q", strings.TrimSpace(commandPath(c)+" "+c.Args().First()))
	}
	cmds := c.App.Commands
	if c.Command != nil && len(c.Command.Subcommands) > 0 {
		cmds = c.Command.Subcommands
	}
	var names []string
	for _, cmd := range cmds {
		if !cmd.Hidden {
			names = append(names, cmd.Name)
		}
	}
	return usageIn(c, "a command is required: %s", strings.Join(names, ", "))
}

// commandPath is c's command as typed after the program name: "serve
// data", or "" for the program itself.
func commandPath(c *cli.Context) string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != c.App.Name {
			names = append(names, x.Command.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(names, " ")
}

// helpCommand shows the help of the program or of any command, nested ones
// included (thunderctl help admin zk), and refuses a command that does not
// exist.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "show the help of thunderctl or of a command",
		ArgsUsage: "[COMMAND...]",
		Action: func(c *cli.Context) error {
			args := []string{c.App.Name}
			cmds := c.App.Commands
			for _, name := range c.Args().Slice() {
				i := slices.IndexFunc(cmds, func(cmd *cli.Command) bool { return cmd.HasName(name) })
				if i < 0 {
					return &usageError{msg: fmt.Sprintf("no command %q", strings.Join(append(args[1:], name), " ")), help: "thunderctl help"}
				}
				args, cmds = append(args, name), cmds[i].Subcommands
			}
			return c.App.Run(append(args, "--help"))
		},
	}
}

func checkLogLevel(v string) error {
	var level slog.Level
	if v != "" && level.UnmarshalText([]byte(v)) != nil {
		return errors.New("want debug, info, warn or error")
	}
	return nil
}

// newLogger writes one line per event to stderr, at --log-level, or at
// level when it is not set: daemons log their lifecycle, commands that
// print results keep stderr for their one error line.
func newLogger(c *cli.Context, level slog.Level) *slog.Logger {
	if s := c.String("log-level"); s != "" {
		_ = level.UnmarshalText([]byte(s)) // checked by the flag
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.String("log-format") == "json" {
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts))
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts))
}

// clusterConn connects to ZooKeeper within the command's timeout. With
// failFast it gives up as soon as every server refused the connection.
func clusterConn(ctx context.Context, c *cli.Context, log *slog.Logger, sessionTimeout time.Duration, failFast bool) (*coord.Cluster, func(), error) {
	auth, acl, err := zkOptions(c)
	if err != nil {
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
	defer cancel()
	conn, err := zkcoord.Dial(dctx, c.String("zk"), zkcoord.Options{SessionTimeout: sessionTimeout, Logger: log, FailFast: failFast, Auth: auth, ACL: acl})
	if errors.Is(err, coord.ErrInvalid) {
		return nil, nil, usageIn(c, "--zk: %v", err)
	}
	if err != nil {
		return nil, nil, err
	}
	return coord.NewCluster(conn, c.String("cluster")), func() { _ = conn.Close() }, nil
}

// newClient connects a client through the coordinators (--coord) or
// ZooKeeper, failing fast when every ZooKeeper server refuses.
func newClient(ctx context.Context, c *cli.Context) (*client.Client, func(), error) {
	tlsConf, err := clientTLS(c)
	if err != nil {
		return nil, nil, err
	}
	auth, _, err := zkOptions(c)
	if err != nil {
		return nil, nil, err
	}
	readFrom, _ := client.ParseReadFrom(c.String("read-from")) // checked by the flag
	opts := client.Options{Timeout: c.Duration("timeout"), ReadFrom: readFrom, Logger: newLogger(c, slog.LevelError),
		TLS: tlsConf, FailFast: true, ZooKeeperAuth: auth}
	rctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
	defer cancel()
	var kv *client.Client
	if coords := c.String("coord"); coords != "" {
		kv, err = client.New(rctx, client.CoordinatorRoutes(strings.Split(coords, ","), tlsConf), opts)
	} else {
		kv, err = client.Dial(rctx, c.String("zk"), c.String("cluster"), opts)
	}
	switch {
	case errors.Is(err, coord.ErrInvalid):
		return nil, nil, usageIn(c, "--zk: %v", err)
	case errors.Is(err, coord.ErrNoCluster):
		return nil, nil, fmt.Errorf("cluster %q does not exist in ZooKeeper %s: %w", c.String("cluster"), c.String("zk"), err)
	case err != nil:
		return nil, nil, err
	}
	return kv, func() { _ = kv.Close() }, nil
}
