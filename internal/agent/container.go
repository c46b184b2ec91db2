package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FindContainer returns the first process of the container whose runtime id is id (the part of
// a pod's containerID after "containerd://", "cri-o://" or "docker://"), looking through proc
// (normally /proc, which must show the node's processes: the agent's pod has hostPID). Every
// container runtime puts a container's processes in a cgroup whose path holds the id, under
// the cgroupfs and the systemd drivers alike; the container's first process is the oldest one
// in it.
func FindContainer(proc, id string) (int, error) {
	if len(id) < 12 || strings.ContainsAny(id, "/:\n") {
		return 0, fmt.Errorf("container id %q: want the hexadecimal id of a container, without the runtime's prefix", id)
	}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	best, bestStart := 0, uint64(0)
	needle := []byte(id)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		cg, err := os.ReadFile(proc + "/" + e.Name() + "/cgroup")
		if err != nil || !bytes.Contains(cg, needle) {
			continue
		}
		start, err := startTime(proc, pid)
		if err != nil {
			continue // gone meanwhile
		}
		if best == 0 || start < bestStart || start == bestStart && pid < best {
			best, bestStart = pid, start
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("no process of container %s in %s: the agent needs the node's process list (hostPID) and the container must be running", shortID(id), proc)
	}
	return best, nil
}

// startTime reads a process's start time (clock ticks since boot, field 22 of its stat).
func startTime(proc string, pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", proc, pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s/%d/stat: no command name", proc, pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("%s/%d/stat: %d fields", proc, pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func shortID(id string) string { return id[:12] }

// bundleEnv reads the environment a container's first process pid started with from the
// container's OCI bundle (config.json's process.env). The runtime's shim, pid's parent, works in
// a bundle directory named after a container id: the container's own, or (containerd, one shim
// per pod) the pod sandbox's, next to which the container's is. It is the environment exactly
// as the runtime gave it, whatever the process did to its own since: nginx, like many daemons,
// writes its process title over the memory /proc/PID/environ shows.
func bundleEnv(proc string, pid int, id string) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", proc, pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 2 {
		return nil, fmt.Errorf("%s/%d/stat: no parent", proc, pid)
	}
	cwd := proc + "/" + f[1] + "/cwd"
	dir, err := os.Readlink(cwd)
	if err != nil {
		return nil, err
	}
	config := cwd + "/config.json"
	if filepath.Base(dir) != id {
		config = cwd + "/../" + id + "/config.json"
	}
	data, err := os.ReadFile(config)
	if err != nil {
		return nil, fmt.Errorf("no bundle of container %s beside %s, where the parent of pid %d works: %w", shortID(id), dir, pid, err)
	}
	var spec struct {
		Process struct {
			Env []string `json:"env"`
		} `json:"process"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("bundle of container %s: %w", shortID(id), err)
	}
	return spec.Process.Env, nil
}
