package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stateRoot holds one directory per live Topology, named by its id, so that a later test binary
// can remove what a killed one left behind (a `go test -timeout` panic skips t.Cleanup).
const stateRoot = "/run/doppel-testenv"

// topologyState is written when a topology is made and removed by its cleanup.
type topologyState struct {
	OwnerPID     int
	OwnerCmdline string
	Dir          string // the topology's temporary directory
}

func (tp *Topology) writeState() error {
	dir := filepath.Join(stateRoot, tp.id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write topology state: %w", err)
	}
	self, _ := readProcess(os.Getpid())
	content := fmt.Sprintf("%d\n%s\n%s\n", os.Getpid(), tp.dir, self.Cmdline)
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(content), 0o644); err != nil {
		return fmt.Errorf("write topology state: %w", err)
	}
	return nil
}

func readState(id string) (topologyState, error) {
	b, err := os.ReadFile(filepath.Join(stateRoot, id, "owner"))
	if err != nil {
		return topologyState{}, err
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 3 {
		return topologyState{}, fmt.Errorf("topology state %s: malformed", id)
	}
	pid, err := strconv.Atoi(lines[0])
	if err != nil {
		return topologyState{}, fmt.Errorf("topology state %s: %w", id, err)
	}
	return topologyState{OwnerPID: pid, Dir: lines[1], OwnerCmdline: strings.TrimSuffix(lines[2], "\n")}, nil
}

// SweepStale removes what test binaries that are gone left behind: their build directories,
// and their topologies: it kills the processes inside their network namespaces (by pid),
// deletes the namespaces, their /etc/netns directories and temporary directories. Topologies of live test binaries are left alone. Main calls it before
// the tests when the privileged tier is on.
func SweepStale() error {
	builds, _ := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*"))
	for _, dir := range builds {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(dir), buildDirPrefix), "-", 2)[0])
		if err == nil && !Alive(pid, "") {
			_ = os.RemoveAll(dir)
		}
	}
	entries, err := os.ReadDir(stateRoot)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep stale topologies: %w", err)
	}
	for _, e := range entries {
		id := e.Name()
		st, err := readState(id)
		if err == nil && Alive(st.OwnerPID, st.OwnerCmdline) {
			continue
		}
		if err := sweep(id, st); err != nil {
			return err
		}
	}
	return nil
}

func sweep(id string, st topologyState) error {
	var namespaces []string
	for _, role := range roles {
		namespaces = append(namespaces, id+"-"+role)
	}
	inodes := make(map[uint64]bool)
	for _, ns := range namespaces {
		var s syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", ns), &s); err == nil {
			inodes[s.Ino] = true
		}
	}
	ps, err := Processes()
	if err != nil {
		return err
	}
	var victims []int
	for _, p := range ps {
		var s syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", p.PID), &s); err == nil && inodes[s.Ino] {
			victims = append(victims, p.PID)
		}
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(5*time.Second, func() bool {
		for _, pid := range victims {
			if Alive(pid, "") {
				return false
			}
		}
		return true
	})
	for _, ns := range namespaces {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
				return fmt.Errorf("sweep stale topology %s: ip netns delete %s: %v: %s", id, ns, err, out)
			}
		}
		if err := os.RemoveAll(filepath.Join("/etc/netns", ns)); err != nil {
			return fmt.Errorf("sweep stale topology %s: %w", id, err)
		}
	}
	if strings.HasPrefix(st.Dir, os.TempDir()+"/"+id+"-") {
		_ = os.RemoveAll(st.Dir)
	}
	fmt.Fprintf(os.Stderr, "testenv: removed stale topology %s (%d processes) left by a test binary that is gone\n", id, len(victims))
	return os.RemoveAll(filepath.Join(stateRoot, id))
}
