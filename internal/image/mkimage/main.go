// Command mkimage builds the agent image from a doppel binary (make image): the binary alone on
// an empty base, reproducible, written as an image archive for `ctr images import` or
// `docker load`. It prints the image's digest.
package main

import (
	"flag"
	"fmt"
	"os"

	"doppel.dev/doppel/internal/image"
)

func main() {
	binary := flag.String("binary", "bin/doppel", "the doppel binary (static, for linux)")
	arch := flag.String("arch", "amd64", "the binary's architecture")
	ref := flag.String("tag", "", "the image reference, like ghcr.io/example/doppel-agent:v1")
	out := flag.String("o", "bin/doppel-agent.tar", "the archive to write")
	flag.Parse()
	if *ref == "" {
		fmt.Fprintln(os.Stderr, "mkimage: -tag is required")
		os.Exit(2)
	}
	b, err := os.ReadFile(*binary)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	img, err := image.Agent(b, *arch)
	if err == nil {
		err = image.WriteArchive(*out, *ref, img)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	d, _ := img.Digest()
	fmt.Printf("%s %s %s\n", *ref, d, *out)
}
