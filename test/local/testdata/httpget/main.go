// Command httpget connects to an HTTP server by address with a chosen network ("tcp4" or
// "tcp6"), prints the peer address the kernel reports for the socket (getpeername), sends
// GET <path> and prints the response body:
//
//	peer: [fd00:10:96::80]:80
//	<body>
//
// It exits 1 with the error on stderr when a step fails. Built static (CGO_ENABLED=0).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	network := flag.String("network", "tcp6", "network to dial: tcp4 or tcp6")
	addr := flag.String("addr", "[::1]:80", "server's IP:port")
	path := flag.String("path", "/", "URL path to fetch")
	flag.Parse()
	if err := run(*network, *addr, *path); err != nil {
		fmt.Fprintln(os.Stderr, "httpget:", err)
		os.Exit(1)
	}
}

func run(network, addr, path string) error {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Go fills RemoteAddr from getpeername(2) after the connect.
	fmt.Printf("peer: %s\n", c.RemoteAddr())
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: doppel-test\r\n\r\n", path); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %q", resp.Status, body)
	}
	fmt.Print(string(body))
	return nil
}
