// Command udpclient exchanges datagrams with a UDP echo server (one that answers "echo:" and
// the datagram), found by name with the pure Go resolver (A records, or AAAA with -family 6),
// in two ways:
//
//	connected: Dial, Write, Read;
//	unconnected: ListenPacket, WriteTo, ReadFrom, checking that the answer comes from the
//	server's address.
//
// It prints one line per exchange and exits 1 with the error on stderr when one fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

func main() {
	name := flag.String("name", "echo", "echo server's host name")
	port := flag.Int("port", 7, "echo server's UDP port")
	family := flag.Int("family", 4, "IP version to use: 4 or 6")
	flag.Parse()
	if *family != 4 && *family != 6 {
		fmt.Fprintln(os.Stderr, "udpclient: -family must be 4 or 6")
		os.Exit(2)
	}
	if err := run(*name, *port, strconv.Itoa(*family)); err != nil {
		fmt.Fprintln(os.Stderr, "udpclient:", err)
		os.Exit(1)
	}
}

func run(name string, port int, family string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	ips, err := r.LookupNetIP(ctx, "ip"+family, name)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", name, err)
	}
	server := netip.AddrPortFrom(ips[0], uint16(port))
	fmt.Printf("resolved %s: %s\n", name, ips[0])

	if err := connected("udp"+family, server); err != nil {
		return fmt.Errorf("connected exchange with %s: %w", server, err)
	}
	if err := unconnected("udp"+family, server); err != nil {
		return fmt.Errorf("unconnected exchange with %s: %w", server, err)
	}
	return nil
}

func connected(network string, server netip.AddrPort) error {
	c, err := net.Dial(network, server.String())
	if err != nil {
		return err
	}
	defer c.Close()
	msg := "hello-connected"
	buf := make([]byte, 2048)
	for try := 0; try < 3; try++ {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return err
		}
		if got := string(buf[:n]); got != "echo:"+msg {
			return fmt.Errorf("got %q, want %q", got, "echo:"+msg)
		}
		fmt.Printf("connected: %s\n", buf[:n])
		return nil
	}
	return errors.New("no answer after 3 tries")
}

func unconnected(network string, server netip.AddrPort) error {
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return err
	}
	defer pc.Close()
	msg := "hello-unconnected"
	buf := make([]byte, 2048)
	for try := 0; try < 3; try++ {
		if _, err := pc.WriteToUDPAddrPort([]byte(msg), server); err != nil {
			return err
		}
		_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return err
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from != server {
			return fmt.Errorf("answer came from %s, want %s", from, server)
		}
		if got := string(buf[:n]); got != "echo:"+msg {
			return fmt.Errorf("got %q, want %q", got, "echo:"+msg)
		}
		fmt.Printf("unconnected: %s from %s\n", buf[:n], net.JoinHostPort(from.Addr().String(), strconv.Itoa(int(from.Port()))))
		return nil
	}
	return errors.New("no answer after 3 tries")
}
