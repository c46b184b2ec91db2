//go:build linux

package local_test

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/testenv"
)

func TestXEnd(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/canonical")
	s := startSession(t, tp, doppel, []string{"-f", "/tmp/dbg.yaml", "--steal", "--http-header", "X-Debug-User: alice"}, prog, "-name", "", "-n", "100")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := tp.InClient(ctx, "curl", "-sS", "--limit-rate", "200K", "-o", "/dev/null", "-w", "%{size_download} %{http_code}", "http://"+testenv.PodIP+testenv.PodBigPath)
	done := make(chan string)
	go func() { out, err := cmd.CombinedOutput(); done <- string(out) + " " + errString(err) }()
	time.Sleep(300 * time.Millisecond)
	s.cmd.Process.Signal(unix.SIGTERM)
	r := s.wait(t)
	t.Logf("curl: %s", <-done)
	_ = r
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
