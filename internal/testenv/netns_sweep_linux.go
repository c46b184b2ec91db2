package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SweepNetNS removes the network namespaces named prefix<pid>-... whose test binary (pid) is
// gone, as when -timeout killed it before its cleanups ran; processes left inside are killed
// first. Tests that make their own namespaces name them so and call this once.
func SweepNetNS(prefix string) error {
	paths, _ := filepath.Glob("/run/netns/" + prefix + "*")
	var errs []string
	for _, path := range paths {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(path), prefix), "-", 2)[0])
		if err != nil || Alive(pid, "") {
			continue
		}
		var ns unix.Stat_t
		if unix.Stat(path, &ns) != nil {
			continue
		}
		ps, _ := Processes()
		for _, p := range ps {
			var st unix.Stat_t
			if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", p.PID), &st) == nil && st.Ino == ns.Ino && st.Dev == ns.Dev {
				_ = unix.Kill(p.PID, unix.SIGKILL)
			}
		}
		if out, err := exec.Command("ip", "netns", "delete", filepath.Base(path)).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("remove stale namespace %s: %v: %s", path, err, out))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
