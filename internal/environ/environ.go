// Package environ builds the environment of the program doppel runs: the
// target's variables, filtered, under the program's own and the overrides,
// and the adjustments for running as the invoking user under sudo.
//
// It is pure functions over []string environments; it holds no state,
// starts no goroutines and opens no files except /etc/passwd, read once per
// ForUser call.
package environ

import (
	"bufio"
	"maps"
	"os"
	"os/user"
	"path"
	"slices"
	"strings"
)

// Options choose which of the target's variables the program gets and
// which values it is forced to see.
type Options struct {
	// Include lists path.Match patterns of the target's variable names to
	// take; empty takes them all. A malformed pattern matches nothing.
	Include []string
	// Exclude lists patterns of the target's variable names to drop; it
	// wins over Include.
	Exclude []string
	// Override sets variables over everything else.
	Override map[string]string
}

// Merge returns the program's environment: the target's variables that
// Include takes and Exclude does not drop, then the program's own variables
// over them, then Override over both. Within one input the last of
// duplicate names wins; entries without "=" or with an empty name are
// dropped. The result is sorted by name.
func Merge(program, target []string, opt Options) []string {
	vars := map[string]string{}
	for name, value := range parse(target) {
		if wanted(name, opt) {
			vars[name] = value
		}
	}
	maps.Copy(vars, parse(program))
	maps.Copy(vars, opt.Override)
	return format(vars)
}

func wanted(name string, opt Options) bool {
	if len(opt.Include) > 0 && !matchAny(opt.Include, name) {
		return false
	}
	return !matchAny(opt.Exclude, name)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// parse reads NAME=VALUE entries into a map, the last duplicate winning.
func parse(env []string) map[string]string {
	vars := make(map[string]string, len(env))
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if ok && name != "" {
			vars[name] = value
		}
	}
	return vars
}

func format(vars map[string]string) []string {
	env := make([]string, 0, len(vars))
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, name+"="+vars[name])
	}
	return env
}

// ForUser adapts env, taken from a process running under sudo, for running
// as u: HOME, USER and LOGNAME become u's, SHELL becomes u's login shell
// from /etc/passwd when that file lists u (otherwise SHELL is left as it
// is), and the SUDO_* variables are removed. The result is sorted by name.
func ForUser(env []string, u *user.User) []string {
	return forUser(env, u, "/etc/passwd")
}

func forUser(env []string, u *user.User, passwd string) []string {
	vars := parse(env)
	for name := range vars {
		if strings.HasPrefix(name, "SUDO_") {
			delete(vars, name)
		}
	}
	vars["HOME"] = u.HomeDir
	vars["USER"] = u.Username
	vars["LOGNAME"] = u.Username
	if shell := loginShell(passwd, u.Username); shell != "" {
		vars["SHELL"] = shell
	}
	return format(vars)
}

// loginShell returns the seventh field of name's line in the passwd file,
// or "" when the file cannot be read or does not list name. os/user has
// no shell, and a user from NSS (LDAP, systemd-homed) may be missing here.
func loginShell(passwd, name string) string {
	f, err := os.Open(passwd)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Split(s.Text(), ":")
		if len(fields) == 7 && fields[0] == name {
			return fields[6]
		}
	}
	return ""
}
