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
	// client a copy of what the real client sent.
	ModeMirror Mode = 1
	// ModeSteal: the client's program serves the connections (with a Filter: only the HTTP
	// requests it matches; the others go to the target's own service).
	ModeSteal Mode = 2
	// ModeCapture: like ModeMirror, but the agent copies each connection from a packet socket,
	// without rules in the target's network and without being in the connection's path; the
	// incoming stream carries capture frames (WriteCaptureData, WriteCaptureEnd).
	ModeCapture Mode = 3
)

func (m Mode) String() string {
	switch m {
	case ModeMirror:
		return "mirror"
	case ModeSteal:
		return "steal"
	case ModeCapture:
		return "capture"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

func (m Mode) valid() bool { return m == ModeMirror || m == ModeSteal || m == ModeCapture }

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

// Capture frames: type (1 byte), length (2 bytes), payload. A data frame carries bytes the real
// client sent, in order; the end frame closes the connection's copy: status (0 complete, 1
// incomplete: the capture lost something, and nothing after the loss was sent) and a reason.
const (
	captureFrameData = 1
	captureFrameEnd  = 2
)

// WriteCaptureData writes p as capture data frames.
func WriteCaptureData(w io.Writer, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), MaxBody)
		b := make([]byte, 0, 3+n)
		b = append(b, captureFrameData)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = append(b, p[:n]...)
		if _, err := w.Write(b); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// WriteCaptureEnd writes the end frame of a captured connection.
func WriteCaptureEnd(w io.Writer, complete bool, reason string) error {
	reason = truncate(reason)
	if len(reason) > MaxBody-1 {
		reason = reason[:MaxBody-1]
	}
	status := byte(1)
	if complete {
		status = 0
	}
	b := []byte{captureFrameEnd}
	b = binary.BigEndian.AppendUint16(b, uint16(1+len(reason)))
	b = append(b, status)
	b = append(b, reason...)
	_, err := w.Write(b)
	return err
}

// CaptureFrame is one decoded capture frame: data, or the end.
type CaptureFrame struct {
	Data     []byte // valid until the next read with the same buffer
	End      bool
	Complete bool
	Reason   string
}

// ReadCaptureFrame reads one capture frame, using buf for its data when it is large enough.
func ReadCaptureFrame(r io.Reader, buf []byte) (CaptureFrame, error) {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return CaptureFrame{}, err
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return CaptureFrame{}, fmt.Errorf("read capture frame: %w", err)
	}
	switch h[0] {
	case captureFrameData:
		return CaptureFrame{Data: buf}, nil
	case captureFrameEnd:
		if n < 1 || buf[0] > 1 {
			return CaptureFrame{}, errors.New("capture end frame: bad status")
		}
		return CaptureFrame{End: true, Complete: buf[0] == 0, Reason: string(buf[1:])}, nil
	}
	return CaptureFrame{}, fmt.Errorf("capture frame: unknown type %d", h[0])
}
