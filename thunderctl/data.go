package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/client"
)

// maxStdinValue bounds what `put KEY -` reads: no node takes a larger
// value, and each refuses values above its own limit (4 MiB by default).
const maxStdinValue = client.MaxValueSize

func getCommand() *cli.Command {
	return &cli.Command{
		Name:  "get",
		Usage: "print the value of KEY followed by a newline (exit 3 if absent)",
		Description: "Bytes that are not printable UTF-8 are escaped (\\\\, \\t, \\n, \\r, \\xNN), so the value is one line; " +
			"-o json prints {\"key\": ..., \"value\": ...} with both in base64, the exact bytes.",
		ArgsUsage: "KEY",
		Flags:     append(clientFlags(true), outputFlag()),
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
				w := newRecordWriter(c)
				if err := w.write(key, v, false); err != nil {
					return err
				}
				return w.flush()
			})
		},
	}
}

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "store VALUE under KEY (VALUE - reads standard input)",
		ArgsUsage: "KEY VALUE",
		Flags:     clientFlags(false),
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
		Flags:     clientFlags(false),
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
		Description: "Bytes that are not printable UTF-8 are escaped (\\\\, \\t, \\n, \\r, \\xNN), so each key is one line; " +
			"-o json prints one {\"key\": ..., \"value\": ...} object per line with both in base64, the exact bytes.",
		Flags: append(clientFlags(true), outputFlag(),
			stringFlag("prefix", "", "only keys starting with `P`", nil),
			stringFlag("start", "", "first key `K` (inclusive)", nil),
			stringFlag("end", "", "stop before key `K` (exclusive)", nil),
			intFlag("limit", 0, 0, math.MaxInt, "at most `N` keys (0 = all)"),
		),
		Action: func(c *cli.Context) error {
			opts := client.ScanOptions{Prefix: optBytes(c, "prefix"), Start: optBytes(c, "start"), End: optBytes(c, "end"), Limit: c.Int("limit")}
			return withClient(c, func(ctx context.Context, kv *client.Client) error {
				w := newRecordWriter(c)
				err := kv.Scan(ctx, opts, func(key, value []byte) error {
					return w.write(key, value, true)
				})
				if ferr := w.flush(); err == nil {
					err = ferr
				}
				return err
			})
		},
	}
}

// recordWriter prints what get and scan read. Plain output is for people:
// a key or value is printed as is when it is printable UTF-8, with a
// backslash escape for anything else (\\, \t, \n, \r, and \xNN for other
// bytes), so one record is one line. -o json prints one JSON object per
// line, {"key": ..., "value": ...}, both in base64: the exact bytes.
type recordWriter struct {
	w    *bufio.Writer
	json bool
	buf  []byte
}

func newRecordWriter(c *cli.Context) *recordWriter {
	return &recordWriter{w: bufio.NewWriter(c.App.Writer), json: outputFormat(c) == admin.FormatJSON}
}

// write prints one record; withKey prints the key too in plain output
// (key<TAB>value, as scan does).
func (r *recordWriter) write(key, value []byte, withKey bool) error {
	r.buf = r.buf[:0]
	if r.json {
		b, err := json.Marshal(struct {
			Key   []byte `json:"key"`
			Value []byte `json:"value"`
		}{key, value})
		if err != nil {
			return err
		}
		r.buf = append(r.buf, b...)
	} else {
		if withKey {
			r.buf = append(appendEscaped(r.buf, key), '\t')
		}
		r.buf = appendEscaped(r.buf, value)
	}
	_, err := r.w.Write(append(r.buf, '\n'))
	return err
}

func (r *recordWriter) flush() error { return r.w.Flush() }

// appendEscaped appends b to dst with every byte that is not printable
// UTF-8 escaped, and the backslash itself, so that the output reads back
// unambiguously.
func appendEscaped(dst, b []byte) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\\':
			dst = append(dst, `\\`...)
		case r == '\t':
			dst = append(dst, `\t`...)
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r == utf8.RuneError && n == 1, !unicode.IsPrint(r):
			for _, c := range b[:n] {
				dst = fmt.Appendf(dst, `\x%02x`, c)
			}
		default:
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
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
