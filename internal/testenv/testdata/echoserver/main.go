// Command echoserver is the test cluster's echo service: on one address it answers every UDP
// datagram with "echo:" and the datagram, from the address the datagram was sent to, and every
// line of a TCP connection with "echo:" and the line. It runs until killed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7", "IP:port to serve UDP and TCP echo on (bind a specific IP so replies come from it)")
	flag.Parse()

	pc, err := net.ListenPacket("udp", *addr)
	if err != nil {
		log.Fatalf("listen udp %s: %v", *addr, err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listen tcp %s: %v", *addr, err)
	}
	fmt.Fprintf(os.Stderr, "echoserver: serving udp and tcp on %s\n", *addr)
	go serveTCP(ln)
	buf := make([]byte, 64*1024)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatalf("read udp: %v", err)
		}
		if _, err := pc.WriteTo(append([]byte("echo:"), buf[:n]...), from); err != nil {
			log.Printf("write udp to %s: %v", from, err)
		}
	}
}

func serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("accept tcp: %v", err)
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintf(c, "echo:%s\n", sc.Text()); err != nil {
					return
				}
			}
		}()
	}
}
