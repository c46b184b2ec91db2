package httproute

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Protocol
	}{
		{"GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP1},
		{"HTTP/1.0 with bare LF", "POST /x?y HTTP/1.0\n\n", HTTP1},
		{"absolute-form", "GET http://svc/ HTTP/1.1\r\n\r\n", HTTP1},
		{"odd method token", "M-SEARCH * HTTP/1.1\r\n\r\n", HTTP1},
		{"HTTP/2 preface", http2Preface + "\x00\x00\x00\x04", HTTP2},
		{"PRI that is not the preface", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", NotHTTP},
		{"TLS client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", NotHTTP},
		{"SSH", "SSH-2.0-OpenSSH_9.6\r\n", NotHTTP},
		{"memcached text command", "get key\r\n", NotHTTP},
		{"HTTP/2 version in a request line", "GET / HTTP/2.0\r\n\r\n", NotHTTP},
		{"leading space", " GET / HTTP/1.1\r\n", NotHTTP},
		{"two spaces", "GET  / HTTP/1.1\r\n", NotHTTP},
		{"CR without LF", "GET / HTTP/1.1\rX", NotHTTP},
		{"request line longer than the buffer", "GET /" + strings.Repeat("a", 5000), HTTP1},
		{"token longer than the buffer", strings.Repeat("A", 5000) + " / HTTP/1.1\r\n", NotHTTP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			got, err := Sniff(br)
			if err != nil {
				t.Fatalf("Sniff: %v", err)
			}
			if got != tc.want {
				t.Errorf("Sniff = %v, want %v", got, tc.want)
			}
			// Nothing was consumed.
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.in {
				t.Errorf("after Sniff the reader holds %q, want %q", rest, tc.in)
			}
		})
	}
}

// TestSniffShortPacket checks that Sniff answers from the bytes a client sent first, without
// waiting for more, on a real connection that stays open.
func TestSniffShortPacket(t *testing.T) {
	tests := []struct {
		first string
		want  Protocol
	}{
		{"GET / HTTP/1.0\r\n", HTTP1}, // shorter than the HTTP/2 preface
		{"\x00\x01", NotHTTP},
		{"PUT ", NotHTTP + 99}, // undecided: Sniff must wait
	}
	for _, tc := range tests {
		t.Run(tc.first, func(t *testing.T) {
			client, server := tcpPair(t)
			if _, err := io.WriteString(client, tc.first); err != nil {
				t.Fatal(err)
			}
			server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			got, err := Sniff(bufio.NewReader(server))
			if tc.want == NotHTTP+99 {
				if err == nil || !strings.Contains(err.Error(), "timeout") {
					t.Errorf("Sniff = %v, %v; want it to wait for more bytes", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Sniff = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestSniffEOF(t *testing.T) {
	got, err := Sniff(bufio.NewReader(strings.NewReader("GET /")))
	if got != NotHTTP || err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("Sniff = %v, %v; want NotHTTP and an EOF error", got, err)
	}
}

// FuzzSniff checks that Sniff never panics, never consumes input, and calls HTTP1 only what
// starts like a request line.
func FuzzSniff(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", http2Preface, "PRI * HTTP/2.0\r\n", "\x16\x03\x01", "get x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 64)
		got, err := Sniff(br)
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, in) {
			t.Fatalf("Sniff consumed input: %q left of %q", rest, in)
		}
		if err != nil {
			return
		}
		method, _, ok := bytes.Cut(in, []byte(" "))
		if got == HTTP1 && (!ok || !isToken(string(method))) {
			t.Fatalf("Sniff(%q) = HTTP1", in)
		}
		if got == HTTP2 && !bytes.HasPrefix(in, []byte(http2Preface)) {
			t.Fatalf("Sniff(%q) = HTTP2", in)
		}
	})
}
