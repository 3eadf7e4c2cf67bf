package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-go/rampart/gateway/internal/proxy"
	"github.com/rampart-go/rampart/gateway/internal/route"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
)

type recordedEvents struct {
	mu  sync.Mutex
	evs []secevent.Event
}

func (r *recordedEvents) Emit(_ context.Context, ev secevent.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recordedEvents) all() []secevent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]secevent.Event(nil), r.evs...)
}

// newGateway returns the gateway handler in front of one recording upstream
// that answers every route.
func newGateway(t *testing.T) (*httptest.Server, *recordedEvents, chan http.Header) {
	t.Helper()
	seen := make(chan http.Header, 16)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Internal-Debug", "secret")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	log := slog.New(slog.DiscardHandler)
	ups := map[string]http.Handler{}
	for _, name := range []string{"auth-service", "user-service", "order-service"} {
		ups[name] = proxy.New(proxy.Options{Name: name, Target: target, Transport: http.DefaultTransport, Logger: log, RequestID: RequestID})
	}
	m, err := server.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ev := &recordedEvents{}
	h := New(Deps{Table: route.Table, Upstreams: ups, Events: ev, Metrics: m,
		Health: server.HealthHandler(func() []server.Check { return nil })})
	gw := httptest.NewServer(h)
	t.Cleanup(gw.Close)
	return gw, ev, seen
}

// TestClientIdentityHeadersNeverReachAService: every header a client could
// use to claim an identity or steer routing is removed at the edge.
func TestClientIdentityHeadersNeverReachAService(t *testing.T) {
	gw, _, seen := newGateway(t)
	spoofed := map[string]string{
		"X-User-Id": "admin", "X-User-Roles": "ADMIN", "X-Internal-Caller": "order-service",
		"X-Forwarded-For": "10.0.0.1", "X-Forwarded-Host": "evil.example", "Forwarded": "for=10.0.0.1",
		"X-Real-Ip": "10.0.0.1", "X-Authenticated-User": "root", "X-Remote-User": "root",
		"X-Original-Url": "/internal/v1/users/1", "X-Http-Method-Override": "DELETE",
		"X-Spiffe-Id": "spiffe://rampart.local/service/order-service",
	}
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/catalog", nil)
	for k, v := range spoofed {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Request-Id", "client-chosen-request-id")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := <-seen
	for k, v := range spoofed {
		vals := got.Values(k)
		if strings.HasPrefix(k, "X-Forwarded-") && !strings.Contains(strings.Join(vals, ","), v) {
			continue // the gateway's own record of the peer and host is allowed
		}
		if len(vals) > 0 {
			t.Errorf("%s: %q reached the service", k, vals)
		}
	}
	if got.Get("X-Request-Id") == "client-chosen-request-id" {
		t.Error("a client-chosen request id reached the service")
	}
	if resp.Header.Get("Server") != "" || resp.Header.Get("X-Internal-Debug") != "" {
		t.Errorf("internal response headers leaked: %v", resp.Header)
	}
}

// TestRouting covers deny-by-default, internal paths, the method allowlist
// and malformed paths, each with its status and (for refusals) one event.
func TestRouting(t *testing.T) {
	gw, ev, seen := newGateway(t)
	tests := []struct {
		name, method, path string
		status             int
		event              secevent.Reason
	}{
		{"a public route is proxied", "GET", "/api/v1/catalog", 200, ""},
		{"an unknown path is 404", "GET", "/api/v2/catalog", 404, ""},
		{"internal routes do not exist at the edge", "GET", "/internal/v1/users/1", 404, ""},
		{"a method outside the route's allowlist is 405", "DELETE", "/api/v1/catalog", 405, "bad_method"},
		{"dot-dot segments are refused", "GET", "/api/v1/catalog/../../internal/v1/users", 400, "bad_path"},
		{"double slashes are refused", "GET", "//api/v1/catalog", 400, "bad_path"},
		{"encoded slashes are refused", "GET", "/api/v1/users/a%2f..%2finternal", 400, "bad_path"},
		{"backslashes are refused", "GET", "/api/v1/users\\..\\internal", 400, "bad_path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ev.all())
			resp := rawRequest(t, gw.Listener.Addr().String(), tc.method, tc.path)
			if resp.StatusCode == 200 {
				<-seen
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			evs := ev.all()[before:]
			switch {
			case tc.event == "" && len(evs) != 0:
				t.Errorf("unexpected events %v", evs)
			case tc.event != "" && (len(evs) != 1 || evs[0].Type != secevent.RequestRejected || evs[0].Reason != tc.event):
				t.Errorf("events %v, want one request.rejected/%s", evs, tc.event)
			}
		})
	}
}

// rawRequest sends the request line exactly as written: Go's client would
// clean or re-encode some of these paths before they left the test.
func rawRequest(t *testing.T, addr, method, path string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n", method, path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
