package environ

import (
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMerge(t *testing.T) {
	target := []string{"PATH=/usr/bin", "DB_HOST=db", "DB_PASS=secret", "AWS_REGION=eu", "HOSTNAME=pod-1"}
	for _, tc := range []struct {
		name            string
		program, target []string
		opt             Options
		want            []string
	}{
		{name: "nothing", want: []string{}},
		{
			name:   "all of the target, sorted",
			target: target,
			want:   []string{"AWS_REGION=eu", "DB_HOST=db", "DB_PASS=secret", "HOSTNAME=pod-1", "PATH=/usr/bin"},
		},
		{
			name:    "program wins over target",
			program: []string{"PATH=/home/me/bin", "EDITOR=vi"},
			target:  target,
			want:    []string{"AWS_REGION=eu", "DB_HOST=db", "DB_PASS=secret", "EDITOR=vi", "HOSTNAME=pod-1", "PATH=/home/me/bin"},
		},
		{
			name:   "include",
			target: target,
			opt:    Options{Include: []string{"DB_*", "HOSTNAME"}},
			want:   []string{"DB_HOST=db", "DB_PASS=secret", "HOSTNAME=pod-1"},
		},
		{
			name:   "exclude wins over include",
			target: target,
			opt:    Options{Include: []string{"DB_*"}, Exclude: []string{"*_PASS"}},
			want:   []string{"DB_HOST=db"},
		},
		{
			name:   "exclude alone",
			target: target,
			opt:    Options{Exclude: []string{"DB_*", "PATH"}},
			want:   []string{"AWS_REGION=eu", "HOSTNAME=pod-1"},
		},
		{
			name:    "filters apply to the target only",
			program: []string{"DB_PASS=mine"},
			target:  target,
			opt:     Options{Include: []string{"PATH"}, Exclude: []string{"DB_*"}},
			want:    []string{"DB_PASS=mine", "PATH=/usr/bin"},
		},
		{
			name:    "override wins over everything",
			program: []string{"A=program", "B=program"},
			target:  []string{"A=target", "C=target"},
			opt:     Options{Override: map[string]string{"A": "override", "C": "", "D": "new"}},
			want:    []string{"A=override", "B=program", "C=", "D=new"},
		},
		{
			name:    "last duplicate wins within one input",
			program: []string{"A=1", "A=2"},
			target:  []string{"B=1", "B=2", "B=3"},
			want:    []string{"A=2", "B=3"},
		},
		{
			name:    "malformed entries dropped, values keep their =",
			program: []string{"NOEQUALS", "=nameless", "X=a=b", "EMPTY="},
			target:  []string{"ALSO_NO_EQUALS", "=C:=C:\\"},
			want:    []string{"EMPTY=", "X=a=b"},
		},
		{
			name:   "malformed include pattern matches nothing",
			target: []string{"A=1"},
			opt:    Options{Include: []string{"["}},
			want:   []string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Merge(tc.program, tc.target, tc.opt)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Merge (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeDoesNotModifyInputs(t *testing.T) {
	program := []string{"B=1", "A=1"}
	target := []string{"D=1", "C=1"}
	Merge(program, target, Options{Override: map[string]string{"E": "1"}})
	if diff := cmp.Diff([]string{"B=1", "A=1"}, program); diff != "" {
		t.Errorf("program changed:\n%s", diff)
	}
	if diff := cmp.Diff([]string{"D=1", "C=1"}, target); diff != "" {
		t.Errorf("target changed:\n%s", diff)
	}
}

func TestForUser(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	err := os.WriteFile(passwd, []byte(
		"root:x:0:0:root:/root:/bin/bash\n"+
			"alice:x:1000:1000:Alice,,,:/home/alice:/usr/bin/zsh\n"+
			"broken line\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	sudoEnv := []string{
		"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/bash", "PATH=/usr/bin",
		"SUDO_USER=alice", "SUDO_UID=1000", "SUDO_GID=1000", "SUDO_COMMAND=/usr/bin/doppel", "TERM=xterm",
	}
	alice := &user.User{Uid: "1000", Gid: "1000", Username: "alice", HomeDir: "/home/alice"}
	bob := &user.User{Uid: "1001", Gid: "1001", Username: "bob", HomeDir: "/home/bob"}

	for _, tc := range []struct {
		name   string
		env    []string
		u      *user.User
		passwd string
		want   []string
	}{
		{
			name: "user in passwd", env: sudoEnv, u: alice, passwd: passwd,
			want: []string{"HOME=/home/alice", "LOGNAME=alice", "PATH=/usr/bin", "SHELL=/usr/bin/zsh", "TERM=xterm", "USER=alice"},
		},
		{
			name: "user not in passwd keeps SHELL", env: sudoEnv, u: bob, passwd: passwd,
			want: []string{"HOME=/home/bob", "LOGNAME=bob", "PATH=/usr/bin", "SHELL=/bin/bash", "TERM=xterm", "USER=bob"},
		},
		{
			name: "no passwd file", env: []string{"SUDO_USER=alice"}, u: alice, passwd: filepath.Join(t.TempDir(), "none"),
			want: []string{"HOME=/home/alice", "LOGNAME=alice", "USER=alice"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := forUser(tc.env, tc.u, tc.passwd)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("forUser (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForUserCurrent(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Skipf("no current user: %v", err)
	}
	got := ForUser([]string{"SUDO_USER=x"}, u)
	for _, kv := range got {
		if strings.HasPrefix(kv, "SUDO_") {
			t.Errorf("SUDO_ variable kept: %s", kv)
		}
	}
	if want := "HOME=" + u.HomeDir; !slices.Contains(got, want) {
		t.Errorf("ForUser = %q, want %q in it", got, want)
	}
}
