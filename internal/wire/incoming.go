package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Mode is what a subscription does with the connections to its port.
type Mode uint8

const (
	// ModeMirror: the agent passes each connection on to the target's own service and sends the
	// client a copy of what the real client sent, in the subscription's feed (ReadFeedFrame).
	ModeMirror Mode = 1
	// ModeSteal: the client's program serves the connections (with a Filter: only the HTTP
	// requests it matches; the others go to the target's own service).
	ModeSteal Mode = 2
	// ModeCapture: like ModeMirror, but the agent copies each connection from a packet socket,
	// without rules in the target's network and without being in the connection's path; all
	// the copies come on the subscription stream, as a feed of frames (ReadFeedFrame).
	ModeCapture Mode = 3
	// ModeTap: like ModeCapture, but the copies come from an eBPF program at the ingress of the
	// target's interfaces, which drops a packet it cannot copy (the client sends it again), so
	// that no copy is lost.
	ModeTap Mode = 4
)

func (m Mode) String() string {
	switch m {
	case ModeMirror:
		return "mirror"
	case ModeSteal:
		return "steal"
	case ModeCapture:
		return "capture"
	case ModeTap:
		return "tap"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

func (m Mode) valid() bool { return m >= ModeMirror && m <= ModeTap }

// Copies reports whether the mode's copies come in one feed from a capture of packets
// (ModeCapture, ModeTap) rather than from connections the agent relays.
func (m Mode) Copies() bool { return m == ModeCapture || m == ModeTap }

// Subscription asks the agent for the incoming connections to one port of the target.
type Subscription struct {
	Port uint16
	Mode Mode
	// Filter, for ModeSteal, chooses the HTTP requests the program gets; empty means whole
	// connections.
	Filter HTTPFilter
}

// HTTPFilter is an HTTP request filter as the user wrote it; the agent compiles it. Every set
// part must match.
type HTTPFilter struct {
	Headers []string // "Name: regexp"
	Path    string   // regexp on the path and query
	Methods []string // any of
}

// IsSet reports whether the filter has any part.
func (f HTTPFilter) IsSet() bool {
	return len(f.Headers) > 0 || f.Path != "" || len(f.Methods) > 0
}

// Incoming describes one connection the agent hands the client.
type Incoming struct {
	Port   uint16         // the subscribed port of the target
	Mode   Mode           // the subscription's mode
	Remote netip.AddrPort // the real client, as the target sees it
	Local  netip.AddrPort // the address the real client connected to
}

// Subscription body: port (uint16), mode (byte), header count (byte) and each header as a
// short string, the path as a short string, method count (byte) and each method. A short
// string is a uint16 length and the bytes.
func appendSubscription(b []byte, s Subscription) ([]byte, error) {
	if len(s.Filter.Headers) > 255 || len(s.Filter.Methods) > 255 {
		return nil, errors.New("subscription: more than 255 headers or methods")
	}
	b = binary.BigEndian.AppendUint16(b, s.Port)
	b = append(b, byte(s.Mode), byte(len(s.Filter.Headers)))
	for _, h := range s.Filter.Headers {
		b = appendShort(b, h)
	}
	b = appendShort(b, s.Filter.Path)
	b = append(b, byte(len(s.Filter.Methods)))
	for _, m := range s.Filter.Methods {
		b = appendShort(b, m)
	}
	return b, nil
}

func parseSubscription(b []byte) (Subscription, error) {
	d := decoder{b: b}
	var s Subscription
	s.Port = d.u16()
	s.Mode = Mode(d.byte())
	for n := d.byte(); n > 0 && d.err == nil; n-- {
		s.Filter.Headers = append(s.Filter.Headers, d.short())
	}
	s.Filter.Path = d.short()
	for n := d.byte(); n > 0 && d.err == nil; n-- {
		s.Filter.Methods = append(s.Filter.Methods, d.short())
	}
	if err := d.end("subscription"); err != nil {
		return Subscription{}, err
	}
	if !s.Mode.valid() {
		return Subscription{}, fmt.Errorf("subscription: unknown mode %d", s.Mode)
	}
	if s.Port == 0 {
		return Subscription{}, errors.New("subscription: port 0")
	}
	if s.Mode != ModeSteal && s.Filter.IsSet() {
		return Subscription{}, errors.New("subscription: an HTTP filter needs steal mode")
	}
	return s, nil
}

// Incoming body: port (uint16), mode (byte), remote and local addresses (AppendAddr).
func appendIncoming(b []byte, in Incoming) []byte {
	b = binary.BigEndian.AppendUint16(b, in.Port)
	b = append(b, byte(in.Mode))
	b = AppendAddr(b, in.Remote)
	return AppendAddr(b, in.Local)
}

func parseIncoming(b []byte) (Incoming, error) {
	d := decoder{b: b}
	var in Incoming
	in.Port = d.u16()
	in.Mode = Mode(d.byte())
	in.Remote = d.addr()
	in.Local = d.addr()
	if err := d.end("incoming"); err != nil {
		return Incoming{}, err
	}
	if !in.Mode.valid() {
		return Incoming{}, fmt.Errorf("incoming: unknown mode %d", in.Mode)
	}
	return in, nil
}

func appendShort(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder reads a body front to back; the first short read sets err and later reads return
// zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = errors.New("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) short() string {
	return string(d.take(int(d.u16())))
}

func (d *decoder) addr() netip.AddrPort {
	if d.err != nil {
		return netip.AddrPort{}
	}
	a, n, err := ParseAddr(d.b)
	if err != nil {
		d.err = err
		return netip.AddrPort{}
	}
	d.b = d.b[n:]
	return a
}

func (d *decoder) end(what string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%s: %d trailing bytes", what, len(d.b))
	}
	return nil
}

// The feed. With ModeMirror and ModeCapture the subscription stream itself, after its OK
// reply, carries the copies of every connection to the port, as frames: type (1 byte), connection ID (4
// bytes, chosen by the agent), length (2 bytes), payload.
//   - open: the payload is the real client's address and the address it connected to;
//   - data: the next bytes the client sent on that connection, in order;
//   - end: status (0 complete: the client ended the connection after all its data was seen;
//     1 incomplete: bytes were lost, and nothing after the loss was sent) and a reason.
const (
	FeedOpen = 1
	FeedData = 2
	FeedEnd  = 3
)

const feedHeader = 7

func appendFeedHeader(b []byte, typ byte, id uint32, n int) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, id)
	return binary.BigEndian.AppendUint16(b, uint16(n))
}

// AppendFeedOpen appends the open frame of connection id.
func AppendFeedOpen(b []byte, id uint32, remote, local netip.AddrPort) []byte {
	addrs := AppendAddr(AppendAddr(nil, remote), local)
	return append(appendFeedHeader(b, FeedOpen, id, len(addrs)), addrs...)
}

// AppendFeedData appends p as data frames of connection id.
func AppendFeedData(b []byte, id uint32, p []byte) []byte {
	for len(p) > 0 {
		n := min(len(p), MaxBody)
		b = append(appendFeedHeader(b, FeedData, id, n), p[:n]...)
		p = p[n:]
	}
	return b
}

// AppendFeedEnd appends the end frame of connection id.
func AppendFeedEnd(b []byte, id uint32, complete bool, reason string) []byte {
	if len(reason) > MaxBody-1 {
		reason = reason[:MaxBody-1]
	}
	status := byte(1)
	if complete {
		status = 0
	}
	b = append(appendFeedHeader(b, FeedEnd, id, 1+len(reason)), status)
	return append(b, reason...)
}

// FeedFrame is one decoded frame of the capture feed.
type FeedFrame struct {
	Type          byte
	ID            uint32
	Remote, Local netip.AddrPort // FeedOpen
	Data          []byte         // FeedData: valid until the next read with the same buffer
	Complete      bool           // FeedEnd
	Reason        string         // FeedEnd
}

// ReadFeedFrame reads one frame of the capture feed, using buf for its payload when it is large
// enough.
func ReadFeedFrame(r io.Reader, buf []byte) (FeedFrame, error) {
	var h [feedHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return FeedFrame{}, err
	}
	f := FeedFrame{Type: h[0], ID: binary.BigEndian.Uint32(h[1:5])}
	n := int(binary.BigEndian.Uint16(h[5:7]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return FeedFrame{}, fmt.Errorf("read capture feed: %w", err)
	}
	switch f.Type {
	case FeedOpen:
		d := decoder{b: buf}
		f.Remote, f.Local = d.addr(), d.addr()
		if err := d.end("capture open"); err != nil {
			return FeedFrame{}, err
		}
	case FeedData:
		f.Data = buf
	case FeedEnd:
		if n < 1 || buf[0] > 1 {
			return FeedFrame{}, errors.New("capture end: bad status")
		}
		f.Complete, f.Reason = buf[0] == 0, string(buf[1:])
	default:
		return FeedFrame{}, fmt.Errorf("capture feed: unknown frame type %d", f.Type)
	}
	return f, nil
}
