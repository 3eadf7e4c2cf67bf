package healthcheck

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func lookup(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestMainExitCodes(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == "/readyz" && ready.Load():
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	// A free port nobody listens on: bind, note, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()

	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		ready bool
		want  int
	}{
		{"a ready service exits 0", map[string]string{"RAMPART_OPS_ADDR": "127.0.0.1:" + port}, nil, true, 0},
		{"a host-less ops address is probed on loopback", map[string]string{"RAMPART_OPS_ADDR": ":" + port}, nil, true, 0},
		{"an any-address ops listener is probed on loopback", map[string]string{"RAMPART_OPS_ADDR": "0.0.0.0:" + port}, nil, true, 0},
		{"a service that is not ready exits 1", map[string]string{"RAMPART_OPS_ADDR": "127.0.0.1:" + port}, nil, false, 1},
		{"--live probes /healthz, which answers while not ready", map[string]string{"RAMPART_OPS_ADDR": "127.0.0.1:" + port}, []string{"--live"}, false, 0},
		{"the default address is used without RAMPART_OPS_ADDR", nil, nil, true, 0},
		{"--addr wins over the environment", map[string]string{"RAMPART_OPS_ADDR": closed}, []string{"--addr", "127.0.0.1:" + port}, true, 0},
		{"nothing listening exits 1", map[string]string{"RAMPART_OPS_ADDR": closed}, []string{"--timeout", "500ms"}, true, 1},
		{"a malformed address exits 2", map[string]string{"RAMPART_OPS_ADDR": "no-port"}, nil, true, 2},
		{"an unknown flag exits 2", nil, []string{"--bogus"}, true, 2},
	}
	for _, tt := range tests {
		ready.Store(tt.ready)
		var stderr bytes.Buffer
		got := Main(context.Background(), lookup(tt.env), "127.0.0.1:"+port, tt.args, &stderr)
		if got != tt.want {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tt.name, got, tt.want, stderr.String())
		}
		if got != 0 && stderr.Len() == 0 {
			t.Errorf("%s: a failing probe must say why on stderr", tt.name)
		}
	}
}

func TestProbeTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	start := time.Now()
	err := Probe(context.Background(), srv.URL+"/readyz", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Probe of a hanging server: %v, want a deadline error", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("Probe took %s, want about its timeout", time.Since(start))
	}
}
