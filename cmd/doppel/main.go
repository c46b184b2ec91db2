// Command doppel runs a local program as if it ran inside a chosen pod or process.
package main

import (
	"os"

	"doppel.dev/doppel/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
