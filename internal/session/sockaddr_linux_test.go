package session

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSockaddrRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		family int
		in     string
		want   string
	}{
		{unix.AF_INET, "10.96.0.10:53", "10.96.0.10:53"},
		{unix.AF_INET6, "[fd00::a]:443", "[fd00::a]:443"},
		{unix.AF_INET6, "10.1.2.3:80", "[::ffff:10.1.2.3]:80"},
		{unix.AF_INET, "[::ffff:10.1.2.3]:80", "10.1.2.3:80"},
	} {
		b := encodeSockaddr(tc.family, netip.MustParseAddrPort(tc.in))
		got, fam, ok := parseSockaddr(b)
		if !ok || fam != tc.family || got.String() != tc.want {
			t.Errorf("encode(%d, %s) parses as %v %d %v, want %s", tc.family, tc.in, got, fam, ok, tc.want)
		}
	}
}

func TestParseSockaddrRejectsOtherFamilies(t *testing.T) {
	for name, b := range map[string][]byte{
		"unix":      {unix.AF_UNIX, 0, '/', 't'},
		"unspec":    {unix.AF_UNSPEC, 0, 0, 0},
		"short v4":  {unix.AF_INET, 0, 0, 80},
		"short v6":  {unix.AF_INET6, 0, 0, 80, 0, 0, 0, 0, 1},
		"too short": {unix.AF_INET},
	} {
		if _, _, ok := parseSockaddr(b); ok {
			t.Errorf("%s: parseSockaddr accepted it", name)
		}
	}
}
