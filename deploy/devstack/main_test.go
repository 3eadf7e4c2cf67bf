package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevstackCommand runs the real devstack binary the way `make run` does:
// it must print the ready line, write endpoints.json, answer
// https://<gateway>/readyz with the generated CA, stop cleanly on SIGTERM,
// and reuse its state on a second run.
func TestDevstackCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the devstack binary")
	}
	bin := filepath.Join(t.TempDir(), "devstack")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build devstack: %v", err)
	}
	dir := t.TempDir()

	var firstCA []byte
	for run := 1; run <= 2; run++ {
		cmd := exec.Command(bin, "--dir", dir, "--ephemeral")
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
		var gateway string
		select {
		case gateway = <-ready:
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("run %d: no ready line", run)
		}

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
