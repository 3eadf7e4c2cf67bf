package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-go/rampart/shared/breaker"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.Unix(0, c.ns.Load()) }

// killable is an upstream on a fixed address that can be stopped and
// started again on the same port.
type killable struct {
	t    *testing.T
	addr string
	srv  *http.Server
	hits atomic.Int64
}

func newKillable(t *testing.T) *killable {
	k := &killable{t: t}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = l.Addr().String()
	k.serve(l)
	t.Cleanup(func() { _ = k.srv.Close() })
	return k
}

func (k *killable) serve(l net.Listener) {
	k.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits.Add(1)
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = k.srv.Serve(l) }()
}

func (k *killable) kill() { _ = k.srv.Close() }

func (k *killable) restart() {
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", k.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		k.t.Fatalf("rebind %s: %v", k.addr, err)
	}
	k.serve(l)
}

func newProxy(t *testing.T, target string, b *breaker.Breaker, reg *prometheus.Registry) (*Upstream, *Metrics) {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	m, err := NewMetrics(reg, []string{"svc"})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return New(Options{Name: "svc", Target: u, Transport: tr, Logger: slog.New(slog.DiscardHandler), Breaker: b, Metrics: m, RetryBackoff: time.Millisecond}), m
}

func send(u http.Handler, method string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	u.ServeHTTP(w, httptest.NewRequest(method, "http://gw/x", nil))
	return w
}

// TestCircuitOpensAnswersFastAndRecovers: an upstream killed → after the
// threshold the circuit opens and 503s with Retry-After come without any
// dial; after the open period one probe goes through, and with the
// upstream back the circuit closes.
func TestCircuitOpensAnswersFastAndRecovers(t *testing.T) {
	up := newKillable(t)
	clk := &fakeClock{}
	clk.ns.Store(time.Now().UnixNano())
	reg := prometheus.NewRegistry()
	var m *Metrics
	b := breaker.New(breaker.Options{Threshold: 3, OpenFor: 5 * time.Second, Now: clk.now,
		OnChange: func(from, to breaker.State) { m.OnChange("svc")(from, to) }})
	p, m := newProxy(t, up.addr, b, reg)

	if w := send(p, "GET"); w.Code != 200 {
		t.Fatalf("healthy upstream: %d", w.Code)
	}
	up.kill()
	for i := range 3 {
		if w := send(p, "POST"); w.Code != http.StatusBadGateway {
			t.Fatalf("failure %d: status %d", i, w.Code)
		}
	}
	if b.State() != breaker.Open || testutil.ToFloat64(m.state.WithLabelValues("svc")) != 2 {
		t.Fatalf("state %v after 3 failures", b.State())
	}
	start := time.Now()
	for range 100 {
		w := send(p, "GET")
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "5" ||
			!strings.Contains(w.Header().Get("Content-Type"), "problem+json") {
			t.Fatalf("open circuit answered %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
		}
	}
	// 100 refusals without a dial: far below one connect timeout each.
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("100 open-circuit answers took %v", d)
	}
	if n := histogramCount(t, reg, "circuit_open"); n != 100 {
		t.Errorf("circuit_open observations %d, want 100", n)
	}

	up.restart()
	clk.ns.Add(int64(6 * time.Second))
	if w := send(p, "GET"); w.Code != 200 {
		t.Fatalf("probe after recovery: %d", w.Code)
	}
	if b.State() != breaker.Closed || testutil.ToFloat64(m.state.WithLabelValues("svc")) != 0 {
		t.Fatalf("state %v after a good probe", b.State())
	}
}

// TestSheddingIsNotAFailure: an upstream answering 503 with Retry-After is
// up and says so (order-service with user-service down); any number of
// those leave the circuit closed, while bare 503s still open it.
func TestSheddingIsNotAFailure(t *testing.T) {
	var retryAfter atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if retryAfter.Load() {
			w.Header().Set("Retry-After", "2")
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(up.Close)
	b := breaker.New(breaker.Options{Threshold: 2, OpenFor: time.Minute})
	p, _ := newProxy(t, strings.TrimPrefix(up.URL, "http://"), b, prometheus.NewRegistry())

	retryAfter.Store(true)
	for i := range 5 {
		if w := send(p, "POST"); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "2" {
			t.Fatalf("request %d: %d Retry-After %q, want the upstream's own answer", i, w.Code, w.Header().Get("Retry-After"))
		}
	}
	if b.State() != breaker.Closed {
		t.Fatalf("state %v after five 503s with Retry-After, want closed", b.State())
	}
	retryAfter.Store(false)
	for range 2 {
		send(p, "GET")
	}
	if b.State() != breaker.Open {
		t.Fatalf("state %v after two bare 503s, want open", b.State())
	}
}

// TestHalfOpenProbeFailureReopens: a failed probe opens the circuit again.
func TestHalfOpenProbeFailureReopens(t *testing.T) {
	clk := &fakeClock{}
	clk.ns.Store(time.Now().UnixNano())
	b := breaker.New(breaker.Options{Threshold: 1, OpenFor: time.Second, Now: clk.now})
	b.Done(false)
	if ok, _ := b.Allow(); ok {
		t.Fatal("open circuit allowed a request")
	}
	clk.ns.Add(int64(2 * time.Second))
	if ok, _ := b.Allow(); !ok {
		t.Fatal("no probe after the open period")
	}
	if ok, _ := b.Allow(); ok {
		t.Fatal("a second concurrent probe was allowed")
	}
	b.Done(false)
	if b.State() != breaker.Open {
		t.Fatalf("state %v after a failed probe", b.State())
	}
}

// TestRetriesOnlyIdempotentRequestsThatNeverLeft: a GET whose connection
// could not be opened is tried again; a POST never is.
func TestRetriesOnlyIdempotentRequestsThatNeverLeft(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	reg := prometheus.NewRegistry()
	p, m := newProxy(t, dead, nil, reg)
	send(p, "GET")
	if v := testutil.ToFloat64(m.retries.WithLabelValues("svc")); v != 1 {
		t.Fatalf("GET retries %v, want 1", v)
	}
	send(p, "POST")
	if v := testutil.ToFloat64(m.retries.WithLabelValues("svc")); v != 1 {
		t.Fatalf("POST was retried (%v)", v)
	}
}

// TestResponseHeadersAreCleaned: Server, X-Powered-By and X-Internal-* go;
// an upstream CSP is kept, a missing one is the API policy.
func TestResponseHeadersAreCleaned(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "x")
		w.Header().Set("X-Powered-By", "y")
		w.Header().Set("X-Internal-Trace", "z")
		if r.URL.Path == "/page" {
			w.Header().Set("Content-Security-Policy", "default-src 'self'")
		}
	}))
	defer up.Close()
	p, _ := newProxy(t, strings.TrimPrefix(up.URL, "http://"), nil, prometheus.NewRegistry())
	w := send(p, "GET")
	for _, k := range []string{"Server", "X-Powered-By", "X-Internal-Trace"} {
		if w.Header().Get(k) != "" {
			t.Errorf("%s leaked", k)
		}
	}
	if w.Header().Get("Content-Security-Policy") != apiCSP {
		t.Errorf("CSP %q", w.Header().Get("Content-Security-Policy"))
	}
	rw := httptest.NewRecorder()
	p.ServeHTTP(rw, httptest.NewRequest("GET", "http://gw/page", nil))
	if rw.Header().Get("Content-Security-Policy") != "default-src 'self'" {
		t.Errorf("upstream CSP replaced: %q", rw.Header().Get("Content-Security-Policy"))
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, outcome string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rampart_gateway_upstream_request_duration_seconds" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.Histogram.GetSampleCount()
				}
			}
		}
	}
	return 0
}

// brokenAfterFirst is a connection whose writes fail, as on a socket the
// peer has closed, once it has carried one exchange: what a pooled
// keep-alive connection looks like when the upstream closed it just as
// the gateway picked it for the next request.
type brokenAfterFirst struct {
	net.Conn
	writes atomic.Int32
	first  *atomic.Bool // set once the first response was read
}

func (c *brokenAfterFirst) Write(p []byte) (int, error) {
	if c.first.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
	}
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestSmallBodiesSurviveADeadPooledConnection: a POST meets a pooled
// connection the upstream has closed (the keep-alive race). Its body was
// read in full before forwarding, so the transport sends it again on a
// fresh connection and the client gets the upstream's answer, not a 502;
// the upstream sees the request once, with its whole body.
func TestSmallBodiesSurviveADeadPooledConnection(t *testing.T) {
	var got atomic.Value
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
		hits.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	defer up.Close()

	var dials atomic.Int32
	var firstDone atomic.Bool
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if dials.Add(1) == 1 {
			return &brokenAfterFirst{Conn: c, first: &firstDone}, nil
		}
		return c, nil
	}}
	defer tr.CloseIdleConnections()
	u, _ := url.Parse(up.URL)
	p := New(Options{Name: "svc", Target: u, Transport: tr, Logger: slog.New(slog.DiscardHandler)})

	post := func(body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "http://gw/orders", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		p.ServeHTTP(w, r)
		return w
	}
	if w := post(`{"n":1}`); w.Code != http.StatusCreated {
		t.Fatalf("first POST: %d", w.Code)
	}
	firstDone.Store(true) // the pooled connection is now dead
	if w := post(`{"n":2}`); w.Code != http.StatusCreated {
		t.Fatalf("POST on a dead pooled connection: %d %s, want 201 after a resend on a fresh connection", w.Code, w.Body)
	}
	if d := dials.Load(); d != 2 {
		t.Errorf("%d dials, want 2 (the dead connection was reused, then a fresh one)", d)
	}
	if n, b := hits.Load(), got.Load(); n != 2 || b != `{"n":2}` {
		t.Errorf("upstream saw %d requests, last body %q; want 2 and the whole second body", n, b)
	}

	// A body too large to buffer streams as before: on a dead connection it
	// fails (502), since it cannot be sent twice.
	firstDone.Store(false)
	dials.Store(0)
	tr.CloseIdleConnections()
	if w := post(`{"n":3}`); w.Code != http.StatusCreated {
		t.Fatalf("POST on a fresh connection: %d", w.Code)
	}
	firstDone.Store(true)
	big := `{"pad":"` + strings.Repeat("x", bufferLimit) + `"}`
	if w := post(big); w.Code != http.StatusBadGateway {
		t.Errorf("unbuffered POST on a dead pooled connection: %d, want 502 (not resent)", w.Code)
	}
}

// TestShortBodyIsTheClientsFault: a body shorter than its Content-Length
// is answered 400, the upstream never sees the request, and the breaker
// does not count it against the upstream.
func TestShortBodyIsTheClientsFault(t *testing.T) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	clock := &fakeClock{}
	b := breaker.New(breaker.Options{Threshold: 1, OpenFor: time.Minute, Now: clock.now})
	p := New(Options{Name: "svc", Target: u, Transport: up.Client().Transport, Logger: slog.New(slog.DiscardHandler), Breaker: b})

	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "http://gw/orders", strings.NewReader(`{"n":`))
	r.ContentLength = 100 // declared, never delivered
	p.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "incomplete") {
		t.Fatalf("short body: %d %s, want 400 incomplete", w.Code, w.Body)
	}
	if hits.Load() != 0 {
		t.Fatalf("the upstream saw %d requests", hits.Load())
	}
	if st := b.State(); st != breaker.Closed {
		t.Fatalf("breaker %v after a client's short body, want closed", st)
	}
}

// cutOffBody is a streamed request body whose client goes away part-way:
// what net/http's server hands the handler when a chunked upload stops
// before its last chunk (io.ErrUnexpectedEOF) or the read deadline hits.
type cutOffBody struct {
	sent bool
	err  error
}

func (b *cutOffBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, `{"pad":"`), nil
	}
	return 0, b.err
}

func (b *cutOffBody) Close() error { return nil }

// TestStreamedBodyCutOffIsTheClientsFault: a streamed (chunked) body that
// the client stops sending part-way is the client's failure, as a short
// buffered body is: 400, and the upstream's breaker does not count it.
// Otherwise any anonymous client could open the circuit of the
// authorization server for everyone with a few truncated uploads to a
// public POST route.
func TestStreamedBodyCutOffIsTheClientsFault(t *testing.T) {
	for _, cause := range []error{io.ErrUnexpectedEOF, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}} {
		t.Run(cause.Error(), func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.ReadAll(r.Body); err != nil {
					w.WriteHeader(http.StatusBadRequest)
				}
			}))
			defer up.Close()
			u, _ := url.Parse(up.URL)
			clock := &fakeClock{}
			b := breaker.New(breaker.Options{Threshold: 1, OpenFor: time.Minute, Now: clock.now})
			p := New(Options{Name: "svc", Target: u, Transport: up.Client().Transport, Logger: slog.New(slog.DiscardHandler), Breaker: b})

			for range 3 {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "http://gw/oauth2/token", nil)
				r.Body, r.ContentLength = &cutOffBody{err: cause}, -1
				p.ServeHTTP(w, r)
				if w.Code != http.StatusBadRequest {
					t.Fatalf("cut-off streamed body: %d %s, want 400", w.Code, w.Body)
				}
			}
			if st := b.State(); st != breaker.Closed {
				t.Fatalf("breaker %v after a client's cut-off bodies, want closed", st)
			}
		})
	}
}
