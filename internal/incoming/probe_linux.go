package incoming

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// ProbeOwnedTables checks that this kernel lets a session own an nftables table with a nat
// redirect (NFT_TABLE_F_OWNER, Linux 5.12): it makes one in a network namespace of its own,
// which disappears with the probe, so no rule ever exists anywhere else. It needs root.
func ProbeOwnedTables() error {
	errc := make(chan error, 1)
	go func() {
		// The thread enters a new network namespace and is not given back to the runtime.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		w, err := createTable(-1, 1, KindMirror, 1)
		if err == nil {
			err = w.SetPorts([]uint16{80})
			w.Close()
		}
		errc <- err
	}()
	return <-errc
}
