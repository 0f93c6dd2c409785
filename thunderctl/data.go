package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/client"
)

// maxStdinValue bounds what `put KEY -` reads: no node takes a larger
// value, and each refuses values above its own limit (4 MiB by default).
const maxStdinValue = client.MaxValueSize

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print the value of KEY followed by a newline (exit 3 if absent)",
		ArgsUsage: "KEY",
		Action: func(c *cli.Context) error {
			key, err := keyArg(c, 1)
			if err != nil {
				return err
			}
			return withClient(c, func(ctx context.Context, kv *client.Client) error {
				v, err := kv.Get(ctx, key)
				if err != nil {
					return err
				}
				w := c.App.Writer
				if _, err := w.Write(v); err != nil {
					return err
				}
				_, err = io.WriteString(w, "\n")
				return err
			})
		},
	}
}

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "store VALUE under KEY (VALUE - reads standard input)",
		ArgsUsage: "KEY VALUE",
		Action: func(c *cli.Context) error {
			key, err := keyArg(c, 2)
			if err != nil {
				return err
			}
			value := []byte(c.Args().Get(1))
			if c.Args().Get(1) == "-" {
				if value, err = io.ReadAll(io.LimitReader(c.App.Reader, maxStdinValue+1)); err != nil {
					return fmt.Errorf("read value from standard input: %w", err)
				}
				if len(value) > maxStdinValue {
					return fmt.Errorf("%w: value from standard input exceeds %d bytes", client.ErrInvalidArgument, maxStdinValue)
				}
			}
			return withClient(c, func(ctx context.Context, kv *client.Client) error {
				return kv.Put(ctx, key, value)
			})
		},
	}
}

func delCommand() *cli.Command {
	return &cli.Command{
		Name:      "del",
		Usage:     "delete KEY (deleting an absent key succeeds)",
		ArgsUsage: "KEY",
		Action: func(c *cli.Context) error {
			key, err := keyArg(c, 1)
			if err != nil {
				return err
			}
			return withClient(c, func(ctx context.Context, kv *client.Client) error {
				return kv.Delete(ctx, key)
			})
		},
	}
}

func scanCommand() *cli.Command {
	return &cli.Command{
		Name:  "scan",
		Usage: "print key<TAB>value lines in key order across the whole cluster",
		Flags: []cli.Flag{
			stringFlag("prefix", "", "only keys starting with `P`", nil),
			stringFlag("start", "", "first key `K` (inclusive)", nil),
			stringFlag("end", "", "stop before key `K` (exclusive)", nil),
			intFlag("limit", 0, 0, math.MaxInt, "at most `N` keys (0 = all)"),
		},
		Action: func(c *cli.Context) error {
			opts := client.ScanOptions{Prefix: optBytes(c, "prefix"), Start: optBytes(c, "start"), End: optBytes(c, "end"), Limit: c.Int("limit")}
			return withClient(c, func(ctx context.Context, kv *client.Client) error {
				w := bufio.NewWriter(c.App.Writer)
				err := kv.Scan(ctx, opts, func(key, value []byte) error {
					w.Write(key)
					w.WriteByte('\t')
					w.Write(value)
					return w.WriteByte('\n')
				})
				if ferr := w.Flush(); err == nil {
					err = ferr
				}
				return err
			})
		},
	}
}

func optBytes(c *cli.Context, name string) []byte {
	if !c.IsSet(name) {
		return nil
	}
	return []byte(c.String(name))
}

// keyArg checks the argument count and the key before any connection is made.
func keyArg(c *cli.Context, want int) ([]byte, error) {
	if c.NArg() != want {
		for _, arg := range c.Args().Slice() {
			if strings.HasPrefix(arg, "-") && len(arg) > 1 {
				return nil, usagef("%s takes %d argument(s): %s; flags go before them (%s)", c.Command.Name, want, c.Command.ArgsUsage, arg)
			}
		}
		return nil, usagef("%s takes %d argument(s): %s", c.Command.Name, want, c.Command.ArgsUsage)
	}
	key := []byte(c.Args().First())
	if err := client.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Command.Name, err)
	}
	return key, nil
}

// withClient runs fn with a connected client within --timeout.
func withClient(c *cli.Context, fn func(context.Context, *client.Client) error) error {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	kv, closeClient, err := newClient(ctx, c)
	if err != nil {
		return err
	}
	defer closeClient()
	return fn(ctx, kv)
}
