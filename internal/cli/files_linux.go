package cli

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"doppel.dev/doppel/internal/config"
	"doppel.dev/doppel/internal/session"
	"doppel.dev/doppel/internal/wire"
)

// systemMounts are where a target's mounts are the machine's, never volumes of the target.
var systemMounts = []string{"/proc", "/sys", "/dev", "/run/netns"}

// defaultFileRules are the rules below the user's: what stays this machine's whatever the
// target mounts (the program's own binary, /proc, /sys, /dev, temporary files and the home
// directory), then what is the target's (its resolver files, its service-account token and
// its volumes). Everything else is this machine's (libraries, interpreters, toolchains).
func defaultFileRules(info wire.Info, program, home string) []config.PathRule {
	local := func(p, why string) config.PathRule {
		return config.PathRule{Pattern: p, Class: config.PathLocal, Origin: "default: " + why}
	}
	remote := func(p, why string) config.PathRule {
		return config.PathRule{Pattern: p, Class: config.PathRemoteWrite, Origin: "default: " + why}
	}
	rules := []config.PathRule{
		local(program, "the program's own binary"),
		local("/proc", "this machine's /proc"),
		local("/sys", "this machine's /sys"),
		local("/dev", "this machine's /dev"),
		local("/tmp", "this machine's temporary files"),
		local("/var/tmp", "this machine's temporary files"),
	}
	if home != "" && home != "/" && path.IsAbs(home) {
		rules = append(rules, local(path.Clean(home), "the user's home"))
	}
	for _, p := range session.TargetFiles {
		rules = append(rules, remote(p, "the target's resolver files"))
	}
	rules = append(rules,
		remote("/var/run/secrets/kubernetes.io", "the target's service-account token"),
		remote("/run/secrets/kubernetes.io", "the target's service-account token"))
	for _, m := range info.Mounts {
		if m == "/" || !path.IsAbs(m) || underAny(m, systemMounts) || strings.ContainsAny(m, "*?[\\") {
			continue
		}
		rules = append(rules, remote(path.Clean(m), "a mounted volume of the target"))
	}
	return rules
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// fileRules adapts the configuration's path rules to the session's.
type fileRules struct{ rules *config.PathRules }

func (f fileRules) Classify(p string) (session.FileClass, string) {
	class, rule := f.rules.Decide(p)
	var c session.FileClass
	switch class {
	case config.PathRemoteRead:
		c = session.FileRemoteRead
	case config.PathRemoteWrite:
		c = session.FileRemoteWrite
	case config.PathNotFound:
		c = session.FileNotFound
	}
	origin := rule.Origin
	if rule.Pattern != "" {
		origin = fmt.Sprintf("%s (%s)", rule.Origin, rule.Pattern)
	}
	return c, origin
}

// remoteFiles is the session's remote-files option, nil in files mode local. For an agent
// that is not on this machine, the files come through a staged copy, which stop removes.
func remoteFiles(cfg *config.Config, info wire.Info, run *programSpec, ag sessionAgent, client *session.Client) (opt *session.FilesOptions, stop func(), err error) {
	stop = func() {}
	if !cfg.Files.IsEnabled() {
		return nil, stop, nil
	}
	home := ""
	for _, kv := range run.env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = v
		}
	}
	rules, err := cfg.Files.PathRules(defaultFileRules(info, run.path, home))
	if err != nil {
		return nil, stop, err
	}
	opt = &session.FilesOptions{Rules: fileRules{rules}, OpensBlock: true, UID: os.Geteuid(), Catchall: config.OriginNoMatch}
	switch ch := ag.channel(); {
	case ch == nil:
		// The target is elsewhere (a pod): its files come through a read-only staged copy.
		if cfg.Files.Mode == config.FilesModeWrite {
			return nil, stop, fmt.Errorf("--fs-mode write works for local targets only: the files of a pod are read through a copy on this machine")
		}
		root, err := session.NewRemoteRoot(client, "")
		if err != nil {
			return nil, stop, err
		}
		opt.Open, stop = root.Open, func() { root.Close() }
	case os.Getenv(filesViaAgentEnv) != "":
		opt.Open = ch.OpenFile
	default:
		opt.Open = ch.OpenFile
		// A local target's root is on this machine: doppel (root) opens inside it itself,
		// which saves the round trip to the agent on every open and stat. filesViaAgentEnv
		// keeps the agent's way, for its tests.
		if root, err := openTargetRoot(info.PID); err == nil {
			opt.Open, opt.OpensBlock = root.open, false
		}
	}
	if run.cred != nil {
		opt.UID = int(run.cred.Uid)
		opt.GIDs = append(opt.GIDs, int(run.cred.Gid))
		for _, g := range run.cred.Groups {
			opt.GIDs = append(opt.GIDs, int(g))
		}
	} else {
		opt.GIDs = append(opt.GIDs, os.Getegid())
		if gs, err := os.Getgroups(); err == nil {
			opt.GIDs = append(opt.GIDs, gs...)
		}
	}
	return opt, stop, nil
}

// filesViaAgentEnv, set to anything, makes the agent open the target's files even for a local
// target, as it does when doppel cannot open the target's root itself.
const filesViaAgentEnv = "DOPPEL_FILES_VIA_AGENT"

// targetRoot is a local target's root directory, held open for the session.
type targetRoot struct{ fd int }

func openTargetRoot(pid int) (*targetRoot, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &targetRoot{fd: fd}, nil
}

// open opens path inside the root, as the agent would: "..", absolute symlinks and symlink
// chains resolve inside it (openat2 RESOLVE_IN_ROOT).
func (r *targetRoot) open(_ context.Context, path string, flags, mode uint32) (*os.File, error) {
	fd, err := unix.Openat2(r.fd, path, &unix.OpenHow{
		Flags:   uint64(flags) | unix.O_CLOEXEC,
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// probeOpenat2 checks openat2 with RESOLVE_IN_ROOT (Linux 5.6), which keeps the target's files
// inside its root.
func probeOpenat2() error {
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return err
	}
	return unix.Close(fd)
}
