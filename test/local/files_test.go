//go:build linux

package local_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

// readfiles runs readfiles under doppel with flags and returns its output lines by "OP PATH".
func readfiles(t *testing.T, tp *testenv.Topology, doppel string, flags []string, ops ...string) map[string]string {
	t.Helper()
	return readfilesEnv(t, tp, doppel, flags, nil, ops...)
}

func readfilesEnv(t *testing.T, tp *testenv.Topology, doppel string, flags, env []string, ops ...string) map[string]string {
	t.Helper()
	prog := testenv.BuildGo(t, "./test/local/testdata/readfiles")
	r := runDoppel(t, tp, doppel, flags, env, append([]string{prog}, ops...)...)
	if r.exitCode != 0 {
		t.Fatalf("doppel exec readfiles: %s", r)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		out[k] = v
	}
	return out
}

// The pod's secret volume (the kubelet's ..data layout), its config map and a data volume
// are read as the pod has them; symlinks that point out of the pod's root resolve inside it;
// the program's own binary and /tmp stay this machine's.
func TestFilesRead(t *testing.T) {
	tp, doppel := setup(t)
	hostTmp, err := os.CreateTemp("", "doppel-local-*")
	if err != nil {
		t.Fatal(err)
	}
	hostTmp.WriteString("local file")
	hostTmp.Close()
	os.Chmod(hostTmp.Name(), 0o644)
	t.Cleanup(func() { os.Remove(hostTmp.Name()) })
	got := readfiles(t, tp, doppel, nil,
		"read:"+testenv.PodSATokenPath,
		"readlink:"+testenv.PodSATokenPath,
		"readlink:"+testenv.PodSecretDir+"/..data",
		"read:"+testenv.PodAppConfigPath,
		"stat:"+testenv.PodAppConfigPath,
		"ls:"+testenv.PodListDir,
		"read:"+testenv.PodEscapeAbsPath,
		"read:"+testenv.PodEscapeRelPath,
		"read:/etc/shop/missing.yaml",
		"access:"+testenv.PodSATokenPath+":r",
		"access:"+testenv.PodAppConfigPath+":w",
		"mmap:"+testenv.PodAppConfigPath+":16",
		"read:"+hostTmp.Name(),
		"exe:x",
	)
	want := map[string]string{
		"read " + testenv.PodSATokenPath:               strconv.Quote(testenv.PodSAToken),
		"readlink " + testenv.PodSATokenPath:           "..data/token",
		"readlink " + testenv.PodSecretDir + "/..data": testenv.PodSecretTimestampDir,
		"read " + testenv.PodAppConfigPath:             strconv.Quote(testenv.PodAppConfig),
		"stat " + testenv.PodAppConfigPath:             fmt.Sprintf("size %d mode -rw-r--r--", len(testenv.PodAppConfig)),
		"read " + testenv.PodEscapeAbsPath:             strconv.Quote(testenv.PodHostname + "\n"),
		"read " + testenv.PodEscapeRelPath:             strconv.Quote(testenv.PodHostname + "\n"),
		"read /etc/shop/missing.yaml":                  "error: no such file or directory",
		"access " + testenv.PodSATokenPath:             "ok",
		"access " + testenv.PodAppConfigPath:           "error: read-only file system", // read mode
		"mmap " + testenv.PodAppConfigPath:             strconv.Quote(testenv.PodAppConfig[:16]),
		"read " + hostTmp.Name():                       strconv.Quote("local file"),
		"exe x":                                        strconv.Quote("\x7fELF"),
	}
	var names []string
	for n := range testenv.PodListFiles() {
		names = append(names, n)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %s, want %s", k, got[k], v)
		}
	}
	if ls := got["ls "+testenv.PodListDir]; len(strings.Fields(ls)) != len(names) {
		t.Errorf("ls %s: %q, want the %d files %v", testenv.PodListDir, ls, len(names), names)
	}
}

// cat, ls, find and python read the pod's files too.
func TestFilesReadTools(t *testing.T) {
	tp, doppel := setup(t)
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"cat", testenv.PodAppConfigPath}, testenv.PodAppConfig},
		{[]string{"sh", "-c", "ls " + testenv.PodSecretDir}, "ca.crt\nnamespace\ntoken\n"},
		{[]string{"find", testenv.PodSecretDir, "-name", "token", "-type", "l"}, testenv.PodSATokenPath + "\n"},
		{[]string{"python3", "-c", "print(open('" + testenv.PodFeatureFlagsPath + "').read(), end='')"}, testenv.PodFeatureFlags},
	} {
		r := runDoppel(t, tp, doppel, nil, nil, c.argv...)
		if r.exitCode != 0 || r.stdout != c.want {
			t.Errorf("%v under doppel: %s\nwant stdout %q", c.argv, r, c.want)
		}
	}
}

// A 1 GiB file of the pod streams: the program reads all of it and at offsets, and neither
// doppel nor its agent holds it in memory (the program reads the target's own file).
func TestFilesBigStreams(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/readfiles")
	ops := []string{prog, "sha:" + testenv.PodBigFilePath}
	for _, off := range testenv.PodBigFileMarkers() {
		ops = append(ops, fmt.Sprintf("at:%s:%d:16", testenv.PodBigFilePath, off))
	}
	stop := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var max int64
		defer func() { peak <- max }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			ps, _ := testenv.ProcessesOf(doppel)
			for _, p := range ps {
				if rss := vmRSS(p.PID); rss > max {
					max = rss
				}
			}
		}
	}()
	r := runDoppel(t, tp, doppel, nil, nil, ops...)
	close(stop)
	maxRSS := <-peak
	if r.exitCode != 0 {
		t.Fatalf("doppel exec readfiles: %s", r)
	}
	if want := "sha " + testenv.PodBigFilePath + ": " + testenv.PodBigFileSHA256(); !strings.Contains(r.stdout, want+"\n") {
		t.Errorf("output lacks %q:\n%s", want, r.stdout)
	}
	for _, off := range testenv.PodBigFileMarkers() {
		want := fmt.Sprintf("at %s: %s", testenv.PodBigFilePath, strconv.Quote(string(testenv.PodBigFileAt(off, 16))))
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	t.Logf("peak resident memory of doppel and its agent while the program read 1 GiB: %d MiB", maxRSS>>20)
	if maxRSS > 200<<20 {
		t.Errorf("doppel or its agent held %d MiB while the program read a 1 GiB file", maxRSS>>20)
	}
}

// vmRSS is a process's resident memory in bytes (0 when it is gone).
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Write mode: files and directories are made, written, renamed and removed on the pod; read
// mode (the default) leaves the pod's files alone and writes go to this machine's paths.
func TestFilesWriteMode(t *testing.T) {
	tp, doppel := setup(t)
	dir := testenv.PodWritableDir
	got := readfiles(t, tp, doppel, []string{"--fs-mode", "write", "--fs-write", dir},
		"write:"+dir+"/out.txt:hello",
		"append:"+dir+"/out.txt: world",
		"read:"+dir+"/out.txt",
		"mkdir:"+dir+"/sub",
		"mv:"+dir+"/out.txt:"+dir+"/sub/moved.txt",
		"ls:"+dir+"/sub",
		"write:"+dir+"/keep.txt:kept and more",
		"truncate:"+dir+"/keep.txt:4",
		"rm:"+dir+"/sub/moved.txt",
		"rmdir:"+dir+"/sub",
		"mv:"+dir+"/keep.txt:/tmp/doppel-cross-device",
		"read:"+testenv.PodAppConfigPath,
	)
	for k, v := range map[string]string{
		"write " + dir + "/out.txt":        "ok",
		"read " + dir + "/out.txt":         strconv.Quote("hello world"),
		"mkdir " + dir + "/sub":            "ok",
		"ls " + dir + "/sub":               "moved.txt",
		"rmdir " + dir + "/sub":            "ok",
		"truncate " + dir + "/keep.txt":    "ok",
		"mv " + dir + "/keep.txt":          "error: invalid cross-device link",
		"read " + testenv.PodAppConfigPath: strconv.Quote(testenv.PodAppConfig),
	} {
		if got[k] != v {
			t.Errorf("%s: got %s, want %s", k, got[k], v)
		}
	}
	ctx := t.Context()
	if r := run(tp.InPod(ctx, "cat", dir+"/keep.txt")); r.stdout != "kept" {
		t.Errorf("the pod's %s/keep.txt: %s", dir, r)
	}
	if r := run(tp.InPod(ctx, "ls", "-A", dir)); r.stdout != "keep.txt\n" {
		t.Errorf("the pod's %s holds: %s", dir, r)
	}
	if _, err := os.Stat(dir + "/keep.txt"); err == nil {
		t.Errorf("%s/keep.txt exists on this machine too", dir)
	}

	// Read mode: the write goes to this machine's path (which does not exist here).
	got = readfiles(t, tp, doppel, []string{"--fs-write", dir}, "write:"+dir+"/read-mode.txt:x", "read:"+dir+"/keep.txt")
	if got["write "+dir+"/read-mode.txt"] != "error: no such file or directory" || got["read "+dir+"/keep.txt"] != strconv.Quote("kept") {
		t.Errorf("read mode: %v", got)
	}
	if r := run(tp.InPod(ctx, "ls", "-A", dir)); r.stdout != "keep.txt\n" {
		t.Errorf("read mode changed the pod's %s: %s", dir, r)
	}
}

// The user's rules come before the defaults: a not-found path does not exist, a local one is
// this machine's.
func TestFilesRules(t *testing.T) {
	tp, doppel := setup(t)
	got := readfiles(t, tp, doppel, []string{"--fs-not-found", testenv.PodFeatureFlagsPath, "--fs-local", testenv.PodSecretDir},
		"read:"+testenv.PodFeatureFlagsPath, "read:"+testenv.PodSATokenPath, "read:"+testenv.PodAppConfigPath)
	for k, v := range map[string]string{
		"read " + testenv.PodFeatureFlagsPath: "error: no such file or directory",
		"read " + testenv.PodSATokenPath:      "error: no such file or directory", // not on this machine
		"read " + testenv.PodAppConfigPath:    strconv.Quote(testenv.PodAppConfig),
	} {
		if got[k] != v {
			t.Errorf("%s: got %s, want %s", k, got[k], v)
		}
	}
	// --fs-mode local: nothing of the pod's but the resolver files.
	got = readfiles(t, tp, doppel, []string{"--fs-mode", "local"}, "read:"+testenv.PodAppConfigPath)
	if got["read "+testenv.PodAppConfigPath] != "error: no such file or directory" {
		t.Errorf("local mode: %v", got)
	}
}

// When doppel cannot open the target's root itself, the agent opens the files and passes the
// descriptors (and the path calls are handled off the notification thread).
func TestFilesViaAgent(t *testing.T) {
	tp, doppel := setup(t)
	got := readfilesEnv(t, tp, doppel, []string{"--fs-mode", "write", "--fs-write", testenv.PodWritableDir}, []string{"DOPPEL_FILES_VIA_AGENT=1"},
		"read:"+testenv.PodSATokenPath, "stat:"+testenv.PodAppConfigPath, "ls:"+testenv.PodSecretDir,
		"read:/etc/shop/missing", "write:"+testenv.PodWritableDir+"/agent.txt:via agent")
	for k, v := range map[string]string{
		"read " + testenv.PodSATokenPath:                 strconv.Quote(testenv.PodSAToken),
		"stat " + testenv.PodAppConfigPath:               fmt.Sprintf("size %d mode -rw-r--r--", len(testenv.PodAppConfig)),
		"ls " + testenv.PodSecretDir:                     "..2026_11_26_10_00_00.123456789 ..data ca.crt namespace token",
		"read /etc/shop/missing":                         "error: no such file or directory",
		"write " + testenv.PodWritableDir + "/agent.txt": "ok",
	} {
		if got[k] != v {
			t.Errorf("%s: got %s, want %s", k, got[k], v)
		}
	}
	if r := run(tp.InPod(t.Context(), "cat", testenv.PodWritableDir+"/agent.txt")); r.stdout != "via agent" {
		t.Errorf("the pod's file: %s", r)
	}
}

// --log-level debug says which rule decided a path, local or the target's.
func TestFilesRuleLogged(t *testing.T) {
	tp, doppel := setup(t)
	prog := testenv.BuildGo(t, "./test/local/testdata/readfiles")
	r := runDoppel(t, tp, doppel, []string{"--log-level", "debug", "--fs-local", "/etc/shop/feature-flags.json"}, nil,
		prog, "read:"+testenv.PodAppConfigPath, "read:"+testenv.PodFeatureFlagsPath)
	for _, want := range []string{
		`msg="remote file" path=/etc/shop/app.yaml class=remote-read rule="default: a mounted volume of the target (/etc/shop)"`,
		`msg="local file" path=/etc/shop/feature-flags.json rule="files.local[0] (/etc/shop/feature-flags.json)"`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the debug log lacks %s\n%s", want, r.stderr)
		}
	}
}
