package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	err := app.Run(args)
	if err != nil {
		fmt.Fprintf(stderr, "thunderctl: %s\n", oneLine(err))
	}
	return exitCodeOf(err)
}

// oneLine keeps an error to the one line the exit-code contract promises (README, "Exit codes").
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "thunderctl",
		Usage:     "run and operate a ThunderYurts key-value cluster",
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     globalFlags(),
		Commands: []*cli.Command{
			serveCommand(),
			devCommand(),
			getCommand(), putCommand(), delCommand(), scanCommand(),
			benchCommand(),
			adminCommand(),
		},
		Description: "Every flag can also be set in the environment as THUNDER_<FLAG> (upper case, - becomes _) " +
			"or in a config file (--config FILE, lines of flag = value); a flag wins over the environment, " +
			"which wins over the file. Exit codes: 0 success, 1 the operation failed, 2 bad usage or invalid input, " +
			"3 key not found.",
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError:    onUsageError,
		Action:          unknownCommand,
	}
	for _, cmd := range app.Commands {
		prepare(cmd)
	}
	return app
}

// prepare gives every command the global flags, the config file, usage
// errors that exit 2, and an error for unknown subcommands.
func prepare(cmd *cli.Command) {
	cmd.OnUsageError = onUsageError
	if len(cmd.Subcommands) > 0 {
		cmd.Action = unknownCommand
		for _, sub := range cmd.Subcommands {
			prepare(sub)
		}
		return
	}
	cmd.Flags = append(cmd.Flags, globalFlags()...)
	cmd.Before = applyInheritedAndFile
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usagef(err.Error() + " (see --help)")
}

func unknownCommand(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef(fmt.Sprintf("unknown command %q (see %s --help)", c.Args().First(), c.Command.FullName()))
	}
	_ = cli.ShowSubcommandHelp(c)
	return usagef("a command is required")
}

// Global flags, defined on the app and on every leaf command so they work
// before or after the command name.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "zk", Value: "127.0.0.1:2181", Usage: "ZooKeeper connect string `HOST:PORT[,...]`", EnvVars: []string{"THUNDER_ZK"}},
		&cli.StringFlag{Name: "cluster", Value: "default", Usage: "cluster `NAME`", EnvVars: []string{"THUNDER_CLUSTER"}},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "per-command timeout", EnvVars: []string{"THUNDER_TIMEOUT"}},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "listing format: table or json", EnvVars: []string{"THUNDER_OUTPUT"}},
		&cli.StringFlag{Name: "coord", Usage: "reach the cluster through these coordinators `HOST:PORT[,...]` instead of ZooKeeper", EnvVars: []string{"THUNDER_COORD"}},
		&cli.StringFlag{Name: "config", Usage: "config `FILE` of flag = value lines", EnvVars: []string{"THUNDER_CONFIG"}},
		&cli.StringFlag{Name: "read-from", Value: "primary", Usage: "members that answer reads: primary (linearizable), secondary or any (may be stale)", EnvVars: []string{"THUNDER_READ_FROM"}},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"THUNDER_LOG_LEVEL"}},
	}
}

// applyInheritedAndFile completes a leaf command's flags: a flag given before
// the command name counts as given to it, and a flag set neither on the
// command line nor in the environment takes its value from the config file.
func applyInheritedAndFile(c *cli.Context) error {
	explicit := map[string]bool{}
	for _, name := range c.LocalFlagNames() {
		if !fromEnv(c, name) {
			explicit[name] = true
		}
	}
	for _, anc := range c.Lineage()[1:] {
		for _, name := range anc.LocalFlagNames() {
			if explicit[name] || !hasFlag(c.Command, name) || fromEnv(anc, name) {
				continue
			}
			if err := c.Set(name, fmt.Sprint(anc.Value(name))); err != nil {
				return usagef(fmt.Sprintf("flag --%s: %v", name, err))
			}
			explicit[name] = true
		}
	}
	path := c.String("config")
	if path == "" {
		return nil
	}
	values, err := readConfigFile(path)
	if err != nil {
		return err
	}
	for name, value := range values {
		if !hasFlag(c.Command, name) {
			continue
		}
		if explicit[name] || envSet(name) {
			continue
		}
		if err := c.Set(name, value); err != nil {
			return usagef(fmt.Sprintf("config %s: %s: %v", path, name, err))
		}
	}
	return nil
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func envName(flag string) string {
	return "THUNDER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func envSet(flag string) bool {
	_, ok := os.LookupEnv(envName(flag))
	return ok
}

// fromEnv reports whether c's value of flag came from the environment
// rather than the command line: urfave/cli counts both as set.
func fromEnv(c *cli.Context, flag string) bool {
	v, ok := os.LookupEnv(envName(flag))
	return ok && fmt.Sprint(c.Value(flag)) == v
}

// readConfigFile reads `flag = value` lines; # starts a comment.
func readConfigFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef(fmt.Sprintf("config file: %v", err))
	}
	defer f.Close()
	values := map[string]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, value, ok := strings.Cut(text, "=")
		if !ok {
			return nil, usagef(fmt.Sprintf("config %s line %d: want flag = value", path, line))
		}
		values[strings.TrimSpace(name)] = strings.Trim(strings.TrimSpace(value), `"`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return values, nil
}

// newLogger writes one key=value line per event to stderr, at --log-level
// but never below floor: commands that print results keep stderr for
// warnings and errors.
func newLogger(c *cli.Context, floor slog.Level) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef(fmt.Sprintf("--log-level %q: want debug, info, warn or error", c.String("log-level")))
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: max(level, floor)})), nil
}

// clusterConn connects to ZooKeeper within the command's timeout.
func clusterConn(ctx context.Context, c *cli.Context, log *slog.Logger, sessionTimeout time.Duration) (*coord.Cluster, func(), error) {
	dctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
	defer cancel()
	conn, err := zkcoord.Dial(dctx, c.String("zk"), zkcoord.Options{SessionTimeout: sessionTimeout, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return coord.NewCluster(conn, c.String("cluster")), func() { _ = conn.Close() }, nil
}

// newClient connects a client through the coordinators (--coord) or
// ZooKeeper.
func newClient(ctx context.Context, c *cli.Context) (*client.Client, func(), error) {
	log, err := newLogger(c, slog.LevelError)
	if err != nil {
		return nil, nil, err
	}
	var routes client.RouteSource
	closeRoutes := func() {}
	if coords := c.String("coord"); coords != "" {
		routes = client.CoordinatorRoutes(strings.Split(coords, ","))
	} else {
		cl, closeConn, err := clusterConn(ctx, c, log, 0)
		if err != nil {
			return nil, nil, err
		}
		routes, closeRoutes = cl, closeConn
	}
	readFrom, err := client.ParseReadFrom(c.String("read-from"))
	if err != nil {
		closeRoutes()
		return nil, nil, usagef(err.Error())
	}
	rctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
	defer cancel()
	kv, err := client.New(rctx, client.Config{Routes: routes, Timeout: c.Duration("timeout"), ReadFrom: readFrom, Logger: log})
	if err != nil {
		closeRoutes()
		if errors.Is(err, coord.ErrNoCluster) {
			return nil, nil, fmt.Errorf("cluster %q does not exist in ZooKeeper %s: %w", c.String("cluster"), c.String("zk"), err)
		}
		return nil, nil, err
	}
	return kv, func() { _ = kv.Close(); closeRoutes() }, nil
}
