// Command resolvefetch resolves a name with the pure Go resolver, prints the addresses it got,
// then fetches http://<name><path> through that resolver and prints the body:
//
//	resolved nginx: 10.96.0.80
//	<body>
//
// It exits 1 with the error on stderr when a step fails. Built static (CGO_ENABLED=0), it is the
// kind of program that libc-hooking tools cannot redirect.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	name := flag.String("name", "nginx", "host name to resolve and fetch")
	path := flag.String("path", "/", "URL path to fetch")
	flag.Parse()
	if err := run(*name, *path); err != nil {
		fmt.Fprintln(os.Stderr, "resolvefetch:", err)
		os.Exit(1)
	}
}

func run(name, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	r := &net.Resolver{PreferGo: true}
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", name, err)
	}
	fmt.Printf("resolved %s: %s\n", name, strings.Join(addrs, " "))

	dialer := &net.Dialer{Resolver: r, Timeout: 5 * time.Second}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: nil}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+name+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch: %s: %q", resp.Status, body)
	}
	fmt.Print(string(body))
	return nil
}
