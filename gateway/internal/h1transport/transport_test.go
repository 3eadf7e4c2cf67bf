package h1transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a real TLS server that counts the connections it accepted.
type upstream struct {
	*httptest.Server
	conns atomic.Int64
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(h)
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// countingFallback records the requests handed to the standard transport.
type countingFallback struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countingFallback) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func newTransport(t testing.TB, u *upstream, o Options) (*Transport, *countingFallback) {
	t.Helper()
	tr := u.Client().Transport.(*http.Transport)
	fb := &countingFallback{rt: tr}
	o.TLS = tr.TLSClientConfig
	o.Fallback = fb
	h := New(o)
	t.Cleanup(h.Close)
	return h, fb
}

func get(t testing.TB, rt http.RoundTripper, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	_ = resp.Body.Close()
	return resp, string(b)
}

// TestAnswersAreReadAndConnectionsReused: the framing cases of HTTP/1.1
// answers (length, chunked with trailers, empty, HEAD, 204, 304) all come
// back whole, and every one leaves the connection reusable: 100 sequential
// requests use one connection.
func TestAnswersAreReadAndConnectionsReused(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "42")
		case "/empty":
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		case "/head":
			w.Header().Set("Content-Length", "1000")
		case "/early-hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "final")
		}
	})
	rt, fb := newTransport(t, u, Options{})
	cases := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/length", 200, "hello"},
		{"GET", "/chunked", 200, "part1,part2"},
		{"GET", "/empty", 200, ""},
		{"GET", "/nocontent", 204, ""},
		{"GET", "/notmodified", 304, ""},
		{"HEAD", "/head", 200, ""},
		{"GET", "/early-hints", 200, "final"},
	}
	for i := 0; i < 100; i++ {
		c := cases[i%len(cases)]
		resp, body := get(t, rt, c.method, u.URL+c.path)
		if resp.StatusCode != c.status || body != c.body {
			t.Fatalf("%s %s: %d %q, want %d %q", c.method, c.path, resp.StatusCode, body, c.status, c.body)
		}
		if c.path == "/chunked" && resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("trailer X-Sum = %q", resp.Trailer.Get("X-Sum"))
		}
	}
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("100 sequential requests opened %d connections, want 1", n)
	}
	if fb.n.Load() != 0 {
		t.Fatalf("%d requests went to the fallback", fb.n.Load())
	}
}

// TestOnlySafeBodilessRequestsTakeTheDirectPath: a body, or a method that
// cannot be replayed, goes to the standard transport.
func TestOnlySafeBodilessRequestsTakeTheDirectPath(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s %s", r.Method, b)
	})
	rt, fb := newTransport(t, u, Options{})
	for _, tc := range []struct {
		method, body string
		fallback     bool
	}{
		{"GET", "", false},
		{"HEAD", "", false},
		{"POST", "x=1", true},
		{"POST", "", true},
		{"PUT", "doc", true},
		{"DELETE", "", true},
		{"OPTIONS", "", true},
		{"GET", "a body on a GET", true},
	} {
		before := fb.n.Load()
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, _ := http.NewRequest(tc.method, u.URL, body)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if tc.method != "HEAD" && string(got) != tc.method+" "+tc.body {
			t.Fatalf("%s: upstream saw %q", tc.method, got)
		}
		if went := fb.n.Load() > before; went != tc.fallback {
			t.Fatalf("%s with body %q: fallback = %v, want %v", tc.method, tc.body, went, tc.fallback)
		}
	}
}

// TestUnreadBodyClosesTheConnection: a body closed before its end cannot
// be drained cheaply, so its connection is closed, not pooled, and the next
// request still succeeds on a new one.
func TestUnreadBodyClosesTheConnection(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, big)
	})
	rt, _ := newTransport(t, u, Options{})
	req, _ := http.NewRequest("GET", u.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = resp.Body.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v: it drained the body", d)
	}
	if _, body := get(t, rt, "GET", u.URL); body != big {
		t.Fatal("second request: wrong body")
	}
	if n := u.conns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2 (the half-read one closed)", n)
	}
}

// TestStalePooledConnectionIsReplaced: an upstream that closes a
// keep-alive connection after answering (as a server does at its idle
// timeout) leaves a dead connection in the pool; the next GET fails on it
// before a byte arrives and is sent again on a fresh connection, invisibly.
func TestStalePooledConnectionIsReplaced(t *testing.T) {
	var conns atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func(c net.Conn) {
				// One answer, announced as keep-alive, then close.
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}(c)
		}
	}()
	fb := &countingFallback{rt: http.DefaultTransport}
	rt := New(Options{Fallback: fb})
	t.Cleanup(rt.Close)
	url := "http://" + ln.Addr().String() + "/"
	for i := 0; i < 5; i++ {
		resp, body := get(t, rt, "GET", url)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		// Give the server's close time to arrive, so the pooled
		// connection is dead, not merely about to be.
		time.Sleep(20 * time.Millisecond)
	}
	if n := conns.Load(); n != 5 {
		t.Fatalf("connections = %d, want 5 (one per request, each replacing a dead one)", n)
	}
}

// TestConnectionCloseIsHonoured: an answer with Connection: close is not
// pooled.
func TestConnectionCloseIsHonoured(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	rt, _ := newTransport(t, u, Options{})
	for i := 0; i < 3; i++ {
		if _, body := get(t, rt, "GET", u.URL); body != "bye" {
			t.Fatalf("body %q", body)
		}
	}
	if n := u.conns.Load(); n != 3 {
		t.Fatalf("connections = %d, want 3", n)
	}
}

// TestTimeouts: a slow head is a timeout error (the proxy answers 504 for
// it) and is not retried; the request context's deadline wins when earlier.
func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })

	t.Run("response header timeout", func(t *testing.T) {
		rt, _ := newTransport(t, u, Options{ResponseHeaderTimeout: 100 * time.Millisecond})
		req, _ := http.NewRequest("GET", u.URL, nil)
		before := hits.Load()
		start := time.Now()
		_, err := rt.RoundTrip(req)
		if !isTimeout(err) {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
		if got := hits.Load() - before; got != 1 {
			t.Fatalf("upstream saw %d requests, want 1 (no retry of a timeout)", got)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		rt, _ := newTransport(t, u, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", u.URL, nil)
		_, err := rt.RoundTrip(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		rt, _ := newTransport(t, u, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", u.URL, nil)
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := rt.RoundTrip(req)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

// TestCancelledWhileReadingTheBody: a client that leaves mid-body stops
// the read at once, and the connection is not pooled.
func TestCancelledWhileReadingTheBody(t *testing.T) {
	release := make(chan struct{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	rt, _ := newTransport(t, u, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", u.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("body read to EOF although the request was cancelled")
	}
	_ = resp.Body.Close()
	rt.mu.Lock()
	idle := len(rt.idle[u.Listener.Addr().String()])
	rt.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d idle connections after a cancelled body, want 0", idle)
	}
}

// TestRefusals: answers and requests the transport will not carry.
func TestRefusals(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upgrade":
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
			w.WriteHeader(http.StatusSwitchingProtocols)
		case "/bighead":
			for i := 0; i < 200; i++ {
				w.Header().Add(fmt.Sprintf("X-Filler-%d", i), strings.Repeat("v", 100))
			}
		}
	})
	rt, _ := newTransport(t, u, Options{MaxResponseHeaderBytes: 4 << 10})
	t.Run("101 without an upgrade asked", func(t *testing.T) {
		req, _ := http.NewRequest("GET", u.URL+"/upgrade", nil)
		if _, err := rt.RoundTrip(req); !errors.Is(err, errUpgrade) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("head over the limit", func(t *testing.T) {
		req, _ := http.NewRequest("GET", u.URL+"/bighead", nil)
		if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "head larger") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("header value that would split the request", func(t *testing.T) {
		before := u.conns.Load()
		req, _ := http.NewRequest("GET", u.URL, nil)
		req.Header["X-Evil"] = []string{"a\r\nX-Injected: 1"}
		if _, err := rt.RoundTrip(req); err == nil {
			t.Fatal("a header value with CRLF was sent")
		}
		if u.conns.Load() != before {
			t.Fatal("a connection was opened for an invalid request")
		}
	})
	t.Run("dial failure is a dial error", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		_ = ln.Close()
		req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
		_, err := rt.RoundTrip(req)
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			t.Fatalf("err = %v, want a *net.OpError with Op dial (the proxy retries only those)", err)
		}
	})
	t.Run("untrusted server certificate", func(t *testing.T) {
		strict := New(Options{TLS: &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}, Fallback: http.DefaultTransport})
		defer strict.Close()
		req, _ := http.NewRequest("GET", u.URL, nil)
		_, err := strict.RoundTrip(req)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("err = %v, want x509.UnknownAuthorityError", err)
		}
	})
}

// TestIdleConnectionsExpire: a connection idle for longer than IdleTimeout
// is closed by the janitor and never reused.
func TestIdleConnectionsExpire(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	rt, _ := newTransport(t, u, Options{IdleTimeout: 50 * time.Millisecond})
	get(t, rt, "GET", u.URL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rt.mu.Lock()
		n := len(rt.idle[u.Listener.Addr().String()])
		rt.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle connection never swept")
		}
		time.Sleep(10 * time.Millisecond)
	}
	get(t, rt, "GET", u.URL)
	if n := u.conns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2", n)
	}
}

// TestConcurrentUse: many goroutines share the pool (run with -race); the
// pool never holds more connections than were in flight at once.
func TestConcurrentUse(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Query().Get("i"))
	})
	rt, _ := newTransport(t, u, Options{MaxIdlePerHost: 8})
	const workers, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				want := fmt.Sprintf("%d-%d", g, i)
				req, _ := http.NewRequest("GET", u.URL+"/?i="+want, nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if string(b) != want {
					errs <- fmt.Errorf("got %q, want %q: answers crossed", b, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rt.mu.Lock()
	idle := len(rt.idle[u.Listener.Addr().String()])
	rt.mu.Unlock()
	if idle > 8 {
		t.Fatalf("%d idle connections, bound is 8", idle)
	}
	if n := u.conns.Load(); n > workers*2 {
		t.Fatalf("%d connections for %d concurrent clients", n, workers)
	}
}

// BenchmarkRoundTrip compares this transport with net/http's on the same
// TLS upstream, one request at a time and in parallel.
func BenchmarkRoundTrip(b *testing.B) {
	u := newUpstream(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[],"next":""}`)
	})
	std := u.Client().Transport.(*http.Transport).Clone()
	std.MaxIdleConnsPerHost = 256
	std.TLSClientConfig = &tls.Config{RootCAs: std.TLSClientConfig.RootCAs, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	std.ForceAttemptHTTP2 = false
	direct := New(Options{TLS: std.TLSClientConfig, Fallback: std})
	b.Cleanup(direct.Close)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"nethttp", std}, {"h1transport", direct}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", u.URL+"/api/v1/orders", nil)
					resp, err := tc.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		})
	}
}

// TestBytesAfterTheAnswerAreNeverTheNextAnswer: an upstream that sends more
// than its answer — a body longer than its Content-Length, a body on a
// HEAD answer, a second answer nobody asked for — must not have the
// surplus read as the answer to the next request on that connection,
// which may be another user's: the connection is closed instead, as
// net/http's Transport closes a connection with unsolicited bytes.
func TestBytesAfterTheAnswerAreNeverTheNextAnswer(t *testing.T) {
	const forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			_, _ = io.WriteString(w, "real")
			return
		}
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		head := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
		switch r.URL.Path {
		case "/long":
			_, _ = bw.WriteString(head + "ok" + forged)
		case "/long-big":
			// Long enough, and written in full-size TLS records, that the
			// body is read past the buffer straight from the TLS
			// connection, which keeps the rest of the record.
			_ = bw.Flush()
			big := strings.Repeat("b", 300<<10)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big+forged)
		case "/head-body":
			// A HEAD answer's Content-Length is the GET body's; the bytes
			// after the head are a whole answer of their own.
			_, _ = bw.WriteString(head + forged)
		case "/late":
			// The extra answer comes after the real one was read and the
			// connection went back to the pool.
			_, _ = bw.WriteString(head + "ok")
			_ = bw.Flush()
			time.Sleep(50 * time.Millisecond)
			_, _ = bw.WriteString(forged)
		}
		_ = bw.Flush()
		// Serve the connection on, answering anything that still comes
		// with the forged answer too.
		for {
			if _, err := http.ReadRequest(bw.Reader); err != nil {
				return
			}
			_, _ = bw.WriteString(forged)
			_ = bw.Flush()
		}
	})
	for _, tc := range []struct{ name, method, path string }{
		{"body longer than Content-Length", "GET", "/long"},
		{"body longer than Content-Length, read past the buffer", "GET", "/long-big"},
		{"body on a HEAD answer", "HEAD", "/head-body"},
		{"an answer sent while the connection sat in the pool", "GET", "/late"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, _ := newTransport(t, u, Options{})
			req, _ := http.NewRequest(tc.method, u.URL+tc.path, nil)
			resp, err := rt.RoundTrip(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("first answer: %v %v", resp, err)
			}
			// Read as ReverseProxy does, with a 32 KiB buffer.
			buf := make([]byte, 32<<10)
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			_ = resp.Body.Close()
			time.Sleep(150 * time.Millisecond) // let late bytes arrive
			if _, body := get(t, rt, "GET", u.URL+"/"); body != "real" {
				t.Fatalf("next answer %q, want %q: bytes the upstream sent after an answer were read as the next one", body, "real")
			}
		})
	}
}
