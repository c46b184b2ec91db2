// Command canonical is the program of the product's canonical scenario: it resolves a service
// name, serves HTTP on a port and prints each request's URI and the client's address:
//
//	resolved nginx: 10.96.0.80
//	listening on [::]:80
//	request GET /a from 10.244.2.9:41234 to 10.244.1.5:80
//
// Every answer is "program: <URI>\n". With -lines it serves a line protocol instead: it prints
// "line <text> from <remote> to <local>" for each line and answers "program: <text>". With -h2c
// it also serves HTTP/2 without TLS (prior knowledge). It exits 0 after -n requests or lines
// (0: never), 1 when a step fails.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	name := flag.String("name", "nginx", "service name to resolve first (empty: none)")
	addr := flag.String("listen", ":80", "address to serve HTTP on")
	n := flag.Int("n", 0, "exit after this many requests (0: never)")
	lines := flag.Bool("lines", false, "serve a line protocol instead of HTTP")
	h2c := flag.Bool("h2c", false, "serve HTTP/2 without TLS too")
	flag.Parse()
	if err := run(*name, *addr, *n, *lines, *h2c); err != nil {
		fmt.Fprintln(os.Stderr, "canonical:", err)
		os.Exit(1)
	}
}

func run(name, addr string, n int, lines, h2c bool) error {
	if name != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		addrs, err := (&net.Resolver{PreferGo: true}).LookupHost(ctx, name)
		cancel()
		if err != nil {
			return fmt.Errorf("resolve %s: %w", name, err)
		}
		fmt.Printf("resolved %s: %s\n", name, strings.Join(addrs, " "))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())

	var mu sync.Mutex
	seen := 0
	done := make(chan struct{})
	if lines {
		go serveLines(ln, func(text, from, to string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Printf("line %s from %s to %s\n", text, from, to)
			seen++
			if seen == n {
				close(done)
			}
		})
		<-done
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		mu.Lock()
		fmt.Printf("request %s %s from %s to %s\n", r.Method, r.RequestURI, r.RemoteAddr, local)
		seen++
		if seen == n {
			close(done)
		}
		mu.Unlock()
		fmt.Fprintf(w, "program: %s\n", r.RequestURI)
	})}
	if h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	go srv.Serve(ln)
	<-done
	// Let the last answer go out before exiting.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

func serveLines(ln net.Listener, log func(text, from, to string)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				log(sc.Text(), c.RemoteAddr().String(), c.LocalAddr().String())
				fmt.Fprintf(c, "program: %s\n", sc.Text())
			}
		}()
	}
}
