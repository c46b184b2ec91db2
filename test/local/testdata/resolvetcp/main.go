// Command resolvetcp resolves a name with the pure Go resolver forced to DNS over TCP: the
// resolver reads the nameservers from /etc/resolv.conf as usual, but every exchange with them
// goes over a TCP connection (length-prefixed messages), none over UDP. It prints the
// nameservers it talked to and the addresses it got:
//
//	dns over tcp via 10.96.0.10:53
//	resolved nginx: 10.96.0.80
//
// It exits 1 with the error on stderr when the lookup fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	name := flag.String("name", "nginx", "host name to resolve")
	flag.Parse()
	if err := run(*name); err != nil {
		fmt.Fprintln(os.Stderr, "resolvetcp:", err)
		os.Exit(1)
	}
}

func run(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	servers := map[string]bool{}
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			mu.Lock()
			servers[address] = true
			mu.Unlock()
			var d net.Dialer
			// A *net.TCPConn is no net.PacketConn, so the resolver frames its messages for TCP.
			return d.DialContext(ctx, "tcp", address)
		},
	}
	addrs, err := r.LookupHost(ctx, name)
	var used []string
	for s := range servers {
		used = append(used, s)
	}
	sort.Strings(used)
	fmt.Printf("dns over tcp via %s\n", strings.Join(used, " "))
	if err != nil {
		return fmt.Errorf("resolve %s: %w", name, err)
	}
	fmt.Printf("resolved %s: %s\n", name, strings.Join(addrs, " "))
	return nil
}
