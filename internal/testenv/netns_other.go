//go:build !linux

package testenv

import (
	"context"
	"errors"
	"net"
)

// DialClient needs Linux network namespaces; elsewhere it returns an error.
func (tp *Topology) DialClient(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errors.New("dial from the client namespace: network namespaces need Linux")
}

// SweepNetNS has nothing to sweep without Linux network namespaces.
func SweepNetNS(prefix string) error { return nil }
