// Command httpcount is the program of the incoming-traffic benchmarks (scripts/bench.sh): it
// serves HTTP on -listen, answers every request with a short body, and counts requests. It
// prints "listening on ADDR" once, then "requests N" whenever the count changed in the last
// 100 ms, and once more when SIGTERM or SIGINT ends it.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("listen", ":80", "address to serve HTTP on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpcount:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	var n atomic.Int64
	body := []byte("hello from the program\n")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write(body)
	}))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(100 * time.Millisecond)
	last := int64(-1)
	for {
		select {
		case <-sigs:
			fmt.Printf("requests %d\n", n.Load())
			return
		case <-tick.C:
			if v := n.Load(); v != last {
				fmt.Printf("requests %d\n", v)
				last = v
			}
		}
	}
}
