package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-go/rampart/deploy/stack"
)

// TestDevstackCommand runs the real devstack binary the way `make run` does:
// it must print the ready line, write endpoints.json, answer
// https://<gateway>/readyz with the generated CA, stop cleanly on SIGTERM,
// and reuse its state on a second run.
func TestDevstackCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the devstack binary")
	}
	bin := buildDevstack(t)
	dir := t.TempDir()

	var firstCA []byte
	for run := 1; run <= 2; run++ {
		cmd, gateway := startDevstack(t, bin, "--dir", dir, "--ephemeral")

		var ep struct {
			Gateway  string                       `json:"gateway"`
			Services map[string]map[string]string `json:"services"`
			NATS     string                       `json:"nats"`
			CAFile   string                       `json:"ca_file"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "endpoints.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &ep); err != nil {
			t.Fatal(err)
		}
		if ep.Gateway != gateway || !filepath.IsAbs(ep.CAFile) || len(ep.Services) != 4 || ep.NATS == "" {
			t.Fatalf("endpoints.json %s does not match the ready line %s", b, gateway)
		}
		caPEM, err := os.ReadFile(ep.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		if run == 1 {
			firstCA = caPEM
		} else if string(caPEM) != string(firstCA) {
			t.Error("second run generated a new CA instead of reusing the state")
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		resp, err := client.Get(gateway + "/readyz")
		if err != nil {
			t.Fatalf("run %d: readyz: %v", run, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("run %d: readyz status %d", run, resp.StatusCode)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: devstack exited with %v after SIGTERM, want 0", run, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("run %d: devstack did not stop within 30s of SIGTERM", run)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "secrets.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets.json must exist with mode 0600: %v %v", fi, err)
	}
}

// TestDevstackProcesses runs `devstack --processes`: each service in a
// process of its own (pids.json), a request that crosses processes (the
// gateway proxies the catalogue to order-service over mTLS), SIGTERM
// stopping every child, and — when devstack itself is killed without a
// chance to clean up — the children noticing and exiting on their own.
func TestDevstackProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the devstack binary")
	}
	bin := buildDevstack(t)
	dir := t.TempDir()
	for _, stop := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		cmd, gateway := startDevstack(t, bin, "--dir", dir, "--ephemeral", "--processes")

		var pids map[string]int
		b, err := os.ReadFile(filepath.Join(dir, "pids.json"))
		if err == nil {
			err = json.Unmarshal(b, &pids)
		}
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("pids.json: %v", err)
		}
		seen := map[int]bool{cmd.Process.Pid: true}
		for _, name := range []string{"gateway", "auth-service", "user-service", "order-service"} {
			pid := pids[name]
			if pid <= 0 || seen[pid] || !alive(pid) {
				_ = cmd.Process.Kill()
				t.Fatalf("pids.json %s: %s has pid %d, want a live process of its own", b, name, pid)
			}
			seen[pid] = true
		}

		caPEM, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		resp, err := client.Get(gateway + "/api/v1/catalog")
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("catalog through the gateway: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			_ = cmd.Process.Kill()
			t.Fatalf("catalog through the gateway: status %d", resp.StatusCode)
		}

		if err := cmd.Process.Signal(stop); err != nil {
			t.Fatal(err)
		}
		werr := make(chan error, 1)
		go func() { werr <- cmd.Wait() }()
		select {
		case err := <-werr:
			if stop == syscall.SIGTERM && err != nil {
				t.Fatalf("devstack exited with %v after SIGTERM, want 0", err)
			}
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("devstack did not stop within 40s of %v", stop)
		}
		// The children are gone too: stopped by devstack, or — after
		// SIGKILL — by the closed pipe from their dead parent.
		deadline := time.Now().Add(30 * time.Second)
		for name, pid := range pids {
			for alive(pid) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("after %v of devstack, %s (pid %d) still runs", stop, name, pid)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// TestProcessModeRestartsOneService stops and starts one service of a
// process-mode stack, as the resilience tests do in one-process mode: the
// service comes back as a new process on the same addresses (the gateway
// reaches it again over mTLS), pids.json names the new process, and the
// other services' processes are untouched.
func TestProcessModeRestartsOneService(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the devstack binary and runs a stack of processes")
	}
	bin := buildDevstack(t)
	ctx := t.Context()
	s, err := stack.Start(ctx, stack.Options{Dir: t.TempDir(), Ephemeral: true, LogWriter: io.Discard, Processes: true, Executable: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	before := s.PIDs()
	client, err := s.HTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	catalog := func() int {
		t.Helper()
		resp, err := client.Get(s.Endpoints.Gateway + "/api/v1/catalog")
		if err != nil {
			t.Fatalf("catalog through the gateway: %v", err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := catalog(); got != http.StatusOK {
		t.Fatalf("catalog before the restart: status %d", got)
	}

	if err := s.StopService(stack.Order); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); alive(before[stack.Order]); {
		if time.Now().After(deadline) {
			t.Fatalf("order-service (pid %d) still runs after StopService", before[stack.Order])
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its upstream gone, the gateway answers for it; it does not hang.
	if got := catalog(); got < 500 {
		t.Fatalf("catalog with order-service stopped: status %d, want 5xx", got)
	}

	if err := s.StartService(ctx, stack.Order); err != nil {
		t.Fatal(err)
	}
	after := s.PIDs()
	if after[stack.Order] == before[stack.Order] || !alive(after[stack.Order]) {
		t.Fatalf("order-service pid %d after the restart (was %d), want a new live process", after[stack.Order], before[stack.Order])
	}
	for _, name := range []string{stack.Gateway, stack.Auth, stack.User} {
		if after[name] != before[name] {
			t.Errorf("%s pid %d → %d: only order-service should have been restarted", name, before[name], after[name])
		}
	}
	var onDisk map[string]int
	b, err := os.ReadFile(filepath.Join(s.Dir, "pids.json"))
	if err == nil {
		err = json.Unmarshal(b, &onDisk)
	}
	if err != nil || onDisk[stack.Order] != after[stack.Order] {
		t.Fatalf("pids.json after the restart: %s (%v), want order-service at pid %d", b, err, after[stack.Order])
	}
	// The circuit breaker may still be open from the failures above: it
	// lets a trial through within its open interval.
	deadline := time.Now().Add(30 * time.Second)
	for catalog() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("catalog through the gateway never recovered after order-service came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// buildDevstack builds this command into a temporary directory.
func buildDevstack(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "devstack")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build devstack: %v", err)
	}
	return bin
}

// startDevstack runs bin with args and waits for its ready line; it
// returns the running command and the gateway URL the line names.
func startDevstack(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "rampart devstack ready: "); ok {
				ready <- u
			}
		}
	}()
	select {
	case gateway := <-ready:
		return cmd, gateway
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("devstack %v: no ready line within 90s", args)
		return nil, ""
	}
}

// alive reports whether pid is a running process (not a zombie: a child
// of ours that exited but was not yet reaped counts as gone).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true // no /proc: trust kill(0)
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
