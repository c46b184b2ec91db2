package session

import "testing"

func TestParseEpollLine(t *testing.T) {
	tests := []struct {
		line, ino string
		want      epollReg
		ok        bool
	}{
		{"tfd:        5 events:       19 data:                5  pos:0 ino:1a2b sdev:8\n", "1a2b",
			epollReg{tfd: 5, events: 0x19, data: 5}, true},
		{"tfd:       12 events: 80000004 data:     7fff00000000c  pos:0 ino:ff sdev:8", "ff",
			epollReg{tfd: 12, events: 0x80000004, data: 0x7fff00000000c}, true},
		{"tfd:        5 events:       19 data:                5  pos:0 ino:1a2b sdev:8", "1a2c", epollReg{}, false},
		{"pos:\t0\n", "1a2b", epollReg{}, false},
		{"flags:\t02000002\n", "1a2b", epollReg{}, false},
		{"tfd:        x events:       19 data:                5  pos:0 ino:1a2b sdev:8", "1a2b", epollReg{}, false},
	}
	for _, tt := range tests {
		got, ok := parseEpollLine(tt.line, tt.ino)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseEpollLine(%q, %q) = %+v, %v; want %+v, %v", tt.line, tt.ino, got, ok, tt.want, tt.ok)
		}
	}
}
