package observability

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// root is the repository root, from this package's directory.
const root = "../.."

// promDir holds the Prometheus configuration, rules and rule tests.
var promDir = filepath.Join(root, "deploy", "prometheus")

// promtoolPath finds promtool: RAMPART_PROMTOOL, then PATH, then ./bin. It
// fails the test, never skips it, when there is none.
func promtoolPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("RAMPART_PROMTOOL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RAMPART_PROMTOOL=%s: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	p, err := filepath.Abs(filepath.Join(root, "bin", "promtool"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatal("promtool not found (RAMPART_PROMTOOL, PATH, ./bin): install Debian's prometheus package " +
		"(apt-get install prometheus; .ci/run does) or run `make promtool` to build it into ./bin")
	return ""
}

// promtool runs promtool with args in deploy/prometheus and fails the test,
// with promtool's output, if it does not succeed.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin := promtoolPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = promDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("promtool %v: exit %d\n%s", args, exit.ExitCode(), out.String())
		}
		t.Fatalf("promtool %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

// glob returns the files matching pattern under dir, failing on none: a
// rename must not turn a check into a check of nothing.
func glob(t testing.TB, dir, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	return files
}

// rel makes paths relative to deploy/prometheus, where promtool runs.
func rel(t testing.TB, files []string) []string {
	t.Helper()
	out := make([]string, len(files))
	for i, f := range files {
		r, err := filepath.Rel(promDir, f)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = r
	}
	return out
}

func TestPromtool(t *testing.T) {
	t.Run("check config of every scrape configuration", func(t *testing.T) {
		for _, cfg := range rel(t, glob(t, promDir, "prometheus*.yml")) {
			promtool(t, "check", "config", cfg)
		}
	})
	t.Run("check rules", func(t *testing.T) {
		promtool(t, append([]string{"check", "rules"}, rel(t, glob(t, promDir, "rules/*.yml"))...)...)
	})
	t.Run("alert unit tests pass", func(t *testing.T) {
		promtool(t, append([]string{"test", "rules"}, rel(t, glob(t, promDir, "tests/*.yml"))...)...)
	})
}
