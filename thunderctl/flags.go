package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
)

// Every flag reads THUNDER_<FLAG> and carries its own check, which runs
// however the value came (command line, environment or config file), before
// the command does anything: a bad value is a usage error, never a retry.

func stringFlag(name, value, usage string, check func(string) error) *cli.StringFlag {
	f := &cli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: []string{envName(name)}}
	if check != nil {
		f.Action = func(c *cli.Context, v string) error {
			if err := check(v); err != nil {
				return usageIn(c, "--%s %q: %v", name, v, err)
			}
			return nil
		}
	}
	return f
}

// requiredFlag is a string flag the command cannot run without; the check
// runs after the config file is read, so the file can supply it.
func requiredFlag(name, usage string, check func(string) error) *cli.StringFlag {
	f := stringFlag(name, "", usage+" (required)", check)
	f.Required = true // prepare moves this check after the config file
	return f
}

// intFlag is an int flag from lo to hi; hi math.MaxInt means no bound.
func intFlag(name string, value, lo, hi int, usage string) *cli.IntFlag {
	want := fmt.Sprintf("%d to %d", lo, hi)
	if hi == math.MaxInt {
		want = fmt.Sprintf("%d or more", lo)
	}
	return &cli.IntFlag{
		Name: name, Value: value, Usage: usage + ", " + want, EnvVars: []string{envName(name)},
		Action: func(c *cli.Context, v int) error {
			if v < lo || v > hi {
				return usageIn(c, "--%s %d: want %s", name, v, want)
			}
			return nil
		},
	}
}

func durationFlag(name string, value, lo, hi time.Duration, usage string) *cli.DurationFlag {
	return &cli.DurationFlag{
		Name: name, Value: value, Usage: fmt.Sprintf("%s, %s to %s", usage, shortDuration(lo), shortDuration(hi)), EnvVars: []string{envName(name)},
		Action: func(c *cli.Context, v time.Duration) error {
			if v < lo || v > hi {
				return usageIn(c, "--%s %s: want %s to %s", name, v, shortDuration(lo), shortDuration(hi))
			}
			return nil
		},
	}
}

func boolFlag(name, usage string, aliases ...string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: name, Aliases: aliases, Usage: usage, EnvVars: []string{envName(name)}}
}

// shortDuration drops the zero tails time.Duration.String keeps: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Global flags, defined on the app and on every leaf command so they work
// before or after the command name.
func globalFlags() []cli.Flag {
	timeout := durationFlag("timeout", client.DefaultTimeout, time.Millisecond, 24*time.Hour, "per-command timeout")
	output := stringFlag("output", "table", "listing format: table or json", checkOutput)
	output.Aliases = []string{"o"}
	return append([]cli.Flag{
		stringFlag("zk", "127.0.0.1:2181", "ZooKeeper connect string `HOST:PORT[,...][/CHROOT]`", checkZK),
		zkAuthFlag(),
		stringFlag("zk-acl", "", "ACL of the znodes this process creates, with --zk-auth: creator (that identity has every right, others none), "+
			"read (others may read) or open (anyone may do anything: while a cluster migrates to ACLs) (default: creator)", checkZKACL),
		stringFlag("cluster", "default", "cluster `NAME`", func(v string) error { return coord.CheckName("cluster", v) }),
		timeout,
		output,
		stringFlag("coord", "", "reach the cluster through these coordinators `HOST:PORT[,...]` instead of ZooKeeper", checkAddrList),
		stringFlag("config", "", "config `FILE` of flag = value lines", nil),
		stringFlag("read-from", "primary", "members that answer reads: primary (linearizable), secondary or any (may be stale)", func(v string) error {
			_, err := client.ParseReadFrom(v)
			return err
		}),
		stringFlag("log-level", "", "debug, info, warn or error (default: info for daemons, error for the other commands)", checkLogLevel),
		stringFlag("log-format", "text", "log lines as text (key=value) or json", checkLogFormat),
	}, tlsFlags()...)
}

func checkGroup(v string) error { return coord.CheckName("group", v) }

func nonEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func checkOutput(v string) error {
	_, err := admin.ParseFormat(v)
	return err
}

func checkLogFormat(v string) error {
	if v != "text" && v != "json" {
		return errors.New("want text or json")
	}
	return nil
}

// checkAddr accepts HOST:PORT with a port from 1 to 65535; an empty host
// means this machine, as for net.Listen.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return fmt.Errorf("want HOST:PORT (%s)", ae.Err)
	} else if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	return nil
}

// checkOptionalAddr is checkAddr for flags that may be left empty.
func checkOptionalAddr(addr string) error {
	if addr == "" {
		return nil
	}
	return checkAddr(addr)
}

// checkAddrList checks a comma-separated HOST:PORT list ("" leaves it unused).
func checkAddrList(list string) error {
	if list == "" {
		return nil
	}
	for _, addr := range strings.Split(list, ",") {
		if err := checkAddr(strings.TrimSpace(addr)); err != nil {
			return err
		}
	}
	return nil
}

// checkZK checks the hosts of a ZooKeeper connect string; a host without a
// port means port 2181, as for ZooKeeper's own tools. zkcoord.Dial checks
// the chroot.
func checkZK(servers string) error {
	hosts, _, _ := strings.Cut(servers, "/")
	if strings.TrimSpace(hosts) == "" {
		return errors.New("want HOST:PORT[,...][/CHROOT]")
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); !strings.Contains(h, ":") {
			h += ":2181"
		}
		if err := checkAddr(h); err != nil {
			return err
		}
	}
	return nil
}

// zkAuthFlag is --zk-auth. It holds a password, so its errors and its help
// never show its value.
func zkAuthFlag() *cli.StringFlag {
	f := stringFlag("zk-auth", "", "ZooKeeper credentials `digest:USER:PASSWORD`, or @FILE holding that line: "+
		"a file keeps the password out of ps and shell history; without it the znodes are open to anyone", nil)
	f.DefaultText = "none"
	f.Action = func(c *cli.Context, v string) error {
		if _, err := readZKAuth(v); err != nil {
			return usageIn(c, "--zk-auth: %v", err)
		}
		return nil
	}
	return f
}

// readZKAuth reads --zk-auth: "" (no credentials), digest:USER:PASSWORD or
// @FILE whose first line is that. Errors never repeat the password.
func readZKAuth(v string) (zkcoord.Auth, error) {
	if v == "" {
		return zkcoord.Auth{}, nil
	}
	if name, ok := strings.CutPrefix(v, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return zkcoord.Auth{}, err
		}
		line, _, _ := strings.Cut(string(b), "\n")
		a, err := zkcoord.ParseAuth(strings.TrimSpace(line))
		if err != nil {
			return zkcoord.Auth{}, fmt.Errorf("%s: %w", name, err)
		}
		return a, nil
	}
	return zkcoord.ParseAuth(v)
}

func checkZKACL(v string) error {
	if v == "" {
		return nil
	}
	_, err := coord.ParseACLMode(v)
	return err
}

// zkOptions are the credentials and ACL of --zk-auth and --zk-acl, which
// their flags checked.
func zkOptions(c *cli.Context) (zkcoord.Auth, coord.ACLMode, error) {
	auth, err := readZKAuth(c.String("zk-auth"))
	if err != nil {
		return auth, 0, usageIn(c, "--zk-auth: %v", err)
	}
	acl := c.String("zk-acl")
	switch {
	case auth.IsZero() && acl != "":
		return auth, 0, usageIn(c, "--zk-acl %s needs --zk-auth", acl)
	case auth.IsZero():
		return auth, coord.ACLOpen, nil
	case acl == "":
		return auth, coord.ACLCreator, nil
	}
	mode, _ := coord.ParseACLMode(acl) // checked by the flag
	return auth, mode, nil
}

// completeFlags completes a leaf command's flags: a flag given before the
// command name counts as given to it, a flag set neither on the command line
// nor in the environment takes its value from the config file, and then
// the required ones must be there.
func completeFlags(c *cli.Context, required []string) error {
	explicit := map[string]bool{}
	for _, name := range c.LocalFlagNames() {
		if !fromEnv(c, name) {
			explicit[name] = true
		}
	}
	for _, anc := range c.Lineage()[1:] {
		for _, name := range anc.LocalFlagNames() {
			if explicit[name] || !hasFlag(c.Command.Flags, name) || fromEnv(anc, name) {
				continue
			}
			if err := c.Set(name, fmt.Sprint(anc.Value(name))); err != nil {
				return usageIn(c, "--%s: %v", name, err)
			}
			explicit[name] = true
		}
	}
	if path := c.String("config"); path != "" {
		if err := applyConfigFile(c, path, explicit); err != nil {
			return err
		}
	}
	for _, name := range required {
		if !c.IsSet(name) {
			return usageIn(c, "--%s is required", name)
		}
	}
	return nil
}

// applyConfigFile reads `flag = value` lines (# starts a comment) and sets
// the command's flags the command line and environment left unset. A key
// that is no flag of any command is an error: it is a typo.
func applyConfigFile(c *cli.Context, path string, explicit map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return usageIn(c, "config file: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, value, ok := strings.Cut(text, "=")
		if !ok {
			return usageIn(c, "config %s line %d: want flag = value", path, line)
		}
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		switch {
		case !knownFlag(c.App, name):
			return usageIn(c, "config %s line %d: unknown flag %q", path, line, name)
		case !hasFlag(c.Command.Flags, name), explicit[name], envSet(name):
			continue
		}
		if err := c.Set(name, value); err != nil {
			return usageIn(c, "config %s line %d: %s = %q: %v", path, line, name, value, err)
		}
	}
	if err := sc.Err(); err != nil {
		return usageIn(c, "config %s: %v", path, err)
	}
	return nil
}

// knownFlag reports whether any command of app has the flag.
func knownFlag(app *cli.App, name string) bool {
	var walk func([]*cli.Command) bool
	walk = func(cmds []*cli.Command) bool {
		for _, cmd := range cmds {
			if hasFlag(cmd.Flags, name) || walk(cmd.Subcommands) {
				return true
			}
		}
		return false
	}
	return hasFlag(app.Flags, name) || walk(app.Commands)
}

func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
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
