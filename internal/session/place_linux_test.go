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

func TestPlaceBalance(t *testing.T) {
	var b placeBalance
	b.v.Store(placeStart)
	if !b.on() {
		t.Fatal("off at the start")
	}
	// Two local connects turn it off; a program with 90 % remote connects keeps it on.
	b.add(-placeLocalCost)
	b.add(-placeLocalCost)
	if b.on() {
		t.Errorf("on after two local connects: %d", b.v.Load())
	}
	for range 100 {
		b.add(1)
	}
	if got := b.v.Load(); got != placeMax {
		t.Errorf("balance %d after 100 remote connects, want the bound %d", got, placeMax)
	}
	for range 10 {
		for range 9 {
			b.add(1)
		}
		b.add(-placeLocalCost)
	}
	if !b.on() {
		t.Errorf("off with 90 %% remote connects: %d", b.v.Load())
	}
	// Half local: off, and bounded below.
	for range 100 {
		b.add(1)
		b.add(-placeLocalCost)
	}
	if got := b.v.Load(); b.on() || got < -placeMax {
		t.Errorf("balance %d with half the connects local, want off and at least %d", got, -placeMax)
	}
}
