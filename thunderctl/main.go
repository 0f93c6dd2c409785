// Command thunderctl runs and operates ThunderYurts: the daemons (serve
// coord, serve data, dev), the data commands (get, put, del, scan, bench)
// and the admin plane (admin ...). Run `thunderctl --help`.
package main

import "os"

func main() { os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr)) }
