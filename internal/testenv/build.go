package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// builds holds the binaries built by this test binary, keyed by package directory relative to
// the module root. They live in buildDir until Main removes it.
var builds struct {
	mu       sync.Mutex
	dir      string
	bins     map[string]*buildResult
	rootOnce sync.Once
	root     string
	rootErr  error
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// Main removes what killed test binaries left behind (SweepStale, privileged runs only), runs
// the tests of m and then removes the binaries built by BuildDoppel and BuildGo.
// Use it from TestMain: func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }.
func Main(m *testing.M) int {
	if os.Getenv(PrivilegedEnv) == "1" && os.Geteuid() == 0 {
		if err := SweepStale(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			return 1
		}
	}
	code := m.Run()
	builds.mu.Lock()
	dir := builds.dir
	builds.mu.Unlock()
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: remove build dir: %v\n", err)
		}
	}
	return code
}

// ModuleRoot returns the directory holding doppel's go.mod, found by walking up from the
// current directory (go test runs each package in its own directory).
func ModuleRoot() (string, error) {
	builds.rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			builds.rootErr = fmt.Errorf("find module root: %w", err)
			return
		}
		for {
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && strings.HasPrefix(strings.TrimSpace(string(data)), "module doppel.dev/doppel") {
				builds.root = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				builds.rootErr = errors.New("find module root: no go.mod of doppel.dev/doppel above the current directory")
				return
			}
			dir = parent
		}
	})
	return builds.root, builds.rootErr
}

// BuildDoppel builds ./cmd/doppel once per test binary and returns the path of the binary.
func BuildDoppel(t testing.TB) string {
	t.Helper()
	return BuildGo(t, "./cmd/doppel")
}

// BuildGo builds the main package in pkgDir (relative to the module root, such as
// "./test/local/testdata/resolvefetch") as a static binary (CGO_ENABLED=0), once per test
// binary, and returns its path. The binary and its directory are readable and executable by
// every user, so tests can run it as an unprivileged uid.
func BuildGo(t testing.TB, pkgDir string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = make(map[string]*buildResult)
	}
	r := builds.bins[pkgDir]
	if r == nil {
		r = &buildResult{}
		builds.bins[pkgDir] = r
	}
	builds.mu.Unlock()

	r.once.Do(func() { r.path, r.err = build(pkgDir) })
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

func build(pkgDir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := buildDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(filepath.Clean(pkgDir)))
	cmd := exec.Command(goTool(), "build", "-trimpath", "-o", out, pkgDir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkgDir, err, b)
	}
	return out, nil
}

// buildDir returns the directory shared by all binaries of this test binary, making it world
// readable so that an unprivileged uid can run what is in it.
func buildDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		return builds.dir, nil
	}
	// The pid in the name lets SweepStale remove the directory of a test binary that was killed.
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", buildDirPrefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("make build dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("make build dir: %w", err)
	}
	builds.dir = dir
	return dir, nil
}

// buildDirPrefix starts the name of every build directory in os.TempDir().
const buildDirPrefix = "doppel-testbin-"

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
