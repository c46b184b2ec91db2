// Command client is the test cluster's HTTP client workload (image doppel.local/client:1, built by
// scripts/cluster.sh): it sends a GET to each -url in turn, every -interval, until it is killed,
// and prints one line per request on stdout:
//
//	<unix-ms> <url> <status> <body bytes>
//	<unix-ms> <url> error <message>
//
// Each request opens a new connection (no keep-alive), so that every request is routed, resolved
// and accepted afresh: a test that redirects a Service's traffic sees the next request go the new
// way. SIGTERM and SIGINT end it with status 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ", ") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

type options struct {
	urls     list
	headers  list
	interval time.Duration
	timeout  time.Duration
}

func main() {
	var o options
	flag.Var(&o.urls, "url", "URL to GET (repeatable)")
	flag.Var(&o.headers, "header", "request header 'Name: value' (repeatable; 'Host: name' sets the Host)")
	flag.DurationVar(&o.interval, "interval", 200*time.Millisecond, "pause between two rounds of requests")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "limit of one request, body included")
	flag.Parse()
	if len(o.urls) == 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: client -url URL [-url URL...] [-header 'Name: value'...] [-interval 200ms] [-timeout 5s]")
		os.Exit(2)
	}
	header, host, err := parseHeaders(o.headers)
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	run(ctx, o, header, host)
}

// parseHeaders turns 'Name: value' flags into a header; a Host header is returned apart, since
// net/http takes the Host from the request, not from its header map.
func parseHeaders(flags []string) (http.Header, string, error) {
	h := http.Header{}
	host := ""
	for _, f := range flags {
		name, value, ok := strings.Cut(f, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, "", fmt.Errorf("header %q: want 'Name: value'", f)
		}
		value = strings.TrimSpace(value)
		if textproto.CanonicalMIMEHeaderKey(name) == "Host" {
			host = value
			continue
		}
		h.Add(name, value)
	}
	return h, host, nil
}

func run(ctx context.Context, o options, header http.Header, host string) {
	c := &http.Client{
		Timeout:   o.timeout,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		// A redirect is a response like any other: print it, do not follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for {
		for _, u := range o.urls {
			status, n, err := get(ctx, c, u, header, host)
			if ctx.Err() != nil {
				return
			}
			now := time.Now().UnixMilli()
			if err != nil {
				fmt.Printf("%d %s error %s\n", now, u, oneLine(err.Error()))
			} else {
				fmt.Printf("%d %s %d %d\n", now, u, status, n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(o.interval):
		}
	}
}

// get sends one GET and reads the whole body: the status and the body's length in bytes.
func get(ctx context.Context, c *http.Client, url string, header http.Header, host string) (int, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header = header.Clone()
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("read body after %d bytes (status %d): %w", n, resp.StatusCode, err)
	}
	return resp.StatusCode, n, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
