package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/olekukonko/tablewriter"
)

// Format is an output format. The zero value is not a valid Format; get one
// from ParseFormat or use the constants.
type Format string

// The output formats `-o/--output` accepts.
const (
	FormatTable Format = "table"
	FormatJSON  Format = "json"
)

// ErrUnknownFormat is returned by ParseFormat and the printers for a format
// other than table or json.
var ErrUnknownFormat = errors.New("admin: unknown output format")

// ParseFormat turns the value of `-o/--output` into a Format; the empty
// string means table. Anything else is an error wrapping ErrUnknownFormat.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "":
		return FormatTable, nil
	case FormatTable, FormatJSON:
		return f, nil
	default:
		return "", fmt.Errorf("%w %q (want table or json)", ErrUnknownFormat, s)
	}
}

// render writes v as indented JSON, or calls table for the table format.
// Every printer goes through it so the formats cannot drift apart.
func render(w io.Writer, f Format, v any, table func() error) error {
	switch f {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case FormatTable:
		return table()
	default:
		return fmt.Errorf("%w %q (want table or json)", ErrUnknownFormat, string(f))
	}
}

// errWriter remembers the first write error so that a printer can write many
// pieces and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}

// table renders one titled section. Wrapping is off because a wrapped
// address or node list is harder to read (and to grep) than a wide line;
// everything aligns left so "-" and numbers line up in one column.
func (e *errWriter) table(title string, header []string, rows [][]string) {
	if title != "" {
		e.printf("%s\n", title)
	}
	t := tablewriter.NewWriter(e)
	t.SetHeader(header)
	t.SetAutoWrapText(false)
	t.SetAutoFormatHeaders(false)
	t.SetAlignment(tablewriter.ALIGN_LEFT)
	t.AppendBulk(rows)
	t.Render()
}
