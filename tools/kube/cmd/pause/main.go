// Command pause is the test cluster's sandbox image and the stand-in container of its pods: it
// sleeps until SIGTERM or SIGINT and exits 0. scripts/cluster.sh builds it statically and packs it
// into a single-layer OCI archive, because no registry is reachable from the test machine.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
