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
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rampart-go/rampart/gateway/internal/edge"
	"github.com/rampart-go/rampart/gateway/internal/edgeauth"
	"github.com/rampart-go/rampart/gateway/internal/proxy"
	"github.com/rampart-go/rampart/gateway/internal/ratelimit"
	"github.com/rampart-go/rampart/gateway/internal/route"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

// recordedEvents records every event and passes it to a real emitter, so
// tests can assert both the event and rampart_security_events_total.
type recordedEvents struct {
	mu   sync.Mutex
	evs  []secevent.Event
	real *secevent.Emitter
}

func (r *recordedEvents) Emit(ctx context.Context, ev secevent.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	r.real.Emit(ctx, ev)
}

func (r *recordedEvents) all() []secevent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]secevent.Event(nil), r.evs...)
}

// denyList is a tokens.Revocations the tests edit.
type denyList struct {
	mu   sync.Mutex
	jtis map[string]bool
	// loading makes Ready false: the list has not loaded its records yet.
	loading atomic.Bool
}

// Ready is revocation.List's: whether the records have been loaded.
func (d *denyList) Ready() bool { return !d.loading.Load() }

func (d *denyList) Revoked(_ context.Context, jti, _ string, _ time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.jtis[jti]
}

func (d *denyList) revoke(jti string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.jtis[jti] = true
}

// gateway is the handler under test on a real socket, behind the same
// framing listener the edge uses, in front of one recording upstream.
type gateway struct {
	addr    string
	url     string
	events  *recordedEvents
	reg     *prometheus.Registry
	seen    chan *http.Request
	issuer  *tokenstest.Issuer
	revoked *denyList
	handler *Handler
}

type gwOption func(*Deps)

const testIssuer, testAudience = "https://gateway.test", "rampart-api"

func newGateway(t testing.TB, opts ...gwOption) *gateway {
	t.Helper()
	g := &gateway{seen: make(chan *http.Request, 64), reg: prometheus.NewRegistry(),
		revoked: &denyList{jtis: map[string]bool{}}}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r2 := r.Clone(context.Background())
		r2.Body = io.NopCloser(strings.NewReader(string(body)))
		select {
		case g.seen <- r2:
		default:
		}
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Internal-Debug", "secret")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)

	emitter, err := secevent.NewEmitter(secevent.Options{Service: "gateway", Registerer: g.reg})
	if err != nil {
		t.Fatal(err)
	}
	g.events = &recordedEvents{real: emitter}
	m, err := server.NewMetrics(g.reg)
	if err != nil {
		t.Fatal(err)
	}
	g.issuer = tokenstest.NewIssuer(t, testIssuer, testAudience)
	v := g.issuer.Verifier(t)
	lim := func(name, s string) *ratelimit.Limit {
		l, err := ratelimit.ParseLimit(name, s)
		if err != nil {
			t.Fatal(err)
		}
		return &l
	}
	limits := RateLimits{
		Anonymous: lim("anonymous", "1000/s:1000"), Authenticated: lim("authenticated", "1000/s:1000"),
		Named: map[string]*ratelimit.Limit{
			route.LimitLogin: lim("login", "10/m:3"), route.LimitToken: lim("token", "1000/s:1000"), route.LimitRegister: lim("register", "1000/s:1000"),
		},
	}
	limiter, err := ratelimit.New(ratelimit.Options{
		Limits:     []*ratelimit.Limit{limits.Anonymous, limits.Authenticated, limits.Named["login"]},
		Registerer: g.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := Deps{
		Table: route.Table, Events: g.events, Metrics: m,
		Health:     server.HealthHandler(func() []server.Check { return nil }),
		Auth:       edgeauth.NewChecker(edgeauth.Options{Verifier: v, Revocations: g.revoked}),
		Limiter:    limiter,
		RateLimits: limits,
		Limits:     Limits{MaxBodyAPI: 1 << 10, MaxBodyForm: 512},
	}
	for _, o := range opts {
		o(&d)
	}
	var h *Handler
	log := slog.New(slog.DiscardHandler)
	ups := map[string]http.Handler{}
	for _, name := range []string{"auth-service", "user-service", "order-service"} {
		ups[name] = proxy.New(proxy.Options{
			Name: name, Target: target, Transport: http.DefaultTransport, Logger: log, PublicHost: "gateway.test",
			Tracer: d.Tracer, Propagator: d.Propagator,
			Fail:         func(w http.ResponseWriter, r *http.Request, e *problem.Error) { h.Fail(w, r, e) },
			BodyTooLarge: func(w http.ResponseWriter, r *http.Request) { h.BodyTooLarge(w, r) },
		})
	}
	if d.Upstreams == nil {
		d.Upstreams = ups
	}
	h = New(d)
	g.handler = h

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := edge.NewServer(edge.ServerOptions{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10, Logger: log})
	go func() { _ = srv.Serve(edge.Listen(l, nil, time.Second, log)) }()
	t.Cleanup(func() { _ = srv.Close() })
	g.addr = l.Addr().String()
	g.url = "http://" + g.addr
	return g
}

func withTrustedProxies(cidrs ...string) gwOption {
	return func(d *Deps) {
		for _, c := range cidrs {
			d.ClientIP.Trusted = append(d.ClientIP.Trusted, netip.MustParsePrefix(c))
		}
	}
}

// token returns a valid token for a fresh subject.
func (g *gateway) token(t testing.TB, mutate func(h, c map[string]any)) string {
	t.Helper()
	return g.issuer.Sign(t, mutate)
}

// raw sends bytes as the whole request on a fresh connection and reads
// one response.
func (g *gateway) raw(t testing.TB, request string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", request, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// rawLine sends "METHOD target HTTP/1.1" with a Host and extra header lines.
func (g *gateway) rawLine(t testing.TB, method, target string, headers ...string) *http.Response {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return g.raw(t, b.String())
}

func (g *gateway) do(t testing.TB, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func (g *gateway) get(t testing.TB, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.url+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return g.do(t, req)
}

// drainSeen empties the upstream's record of requests.
func (g *gateway) drainSeen() {
	for {
		select {
		case <-g.seen:
		default:
			return
		}
	}
}

// secMetric reads rampart_security_events_total{type, reason}.
func (g *gateway) secMetric(t testing.TB, typ secevent.Type, reason secevent.Reason) float64 {
	t.Helper()
	return metricValue(t, g.reg, "rampart_security_events_total", map[string]string{"type": string(typ), "reason": string(reason)})
}

func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if !labelsMatch(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.Label {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// refusal is what a refused request must produce.
type refusal struct {
	status int
	typ    secevent.Type
	reason secevent.Reason // "" with typ "" : no event expected
}

// expectRefusal runs send and asserts the status, a problem+json body,
// exactly one event of the wanted type and reason, and that the security
// event counter moved by one. A zero typ asserts that no event was sent.
func (g *gateway) expectRefusal(t *testing.T, want refusal, send func() *http.Response) *http.Response {
	t.Helper()
	before := len(g.events.all())
	var metricBefore float64
	if want.typ != "" {
		metricBefore = g.secMetric(t, want.typ, want.reason)
	}
	resp := send()
	if resp.StatusCode != want.status {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, want.status, body)
	}
	evs := g.events.all()[before:]
	if want.typ == "" {
		if len(evs) != 0 {
			t.Errorf("unexpected events %v", evs)
		}
		return resp
	}
	if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("Content-Type %q, want %s", ct, problem.ContentType)
	}
	if len(evs) != 1 || evs[0].Type != want.typ || evs[0].Reason != want.reason {
		t.Errorf("events %v, want exactly one %s/%s", evs, want.typ, want.reason)
	}
	if got := g.secMetric(t, want.typ, want.reason) - metricBefore; got != 1 {
		t.Errorf("rampart_security_events_total{type=%s,reason=%s} moved by %v, want 1", want.typ, want.reason, got)
	}
	return resp
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readResponse reads one response from a connection shared by several.
func readResponse(t testing.TB, conn net.Conn) *http.Response {
	t.Helper()
	br, ok := readers.Load(conn)
	if !ok {
		br, _ = readers.LoadOrStore(conn, bufio.NewReader(conn))
	}
	resp, err := http.ReadResponse(br.(*bufio.Reader), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var readers sync.Map
