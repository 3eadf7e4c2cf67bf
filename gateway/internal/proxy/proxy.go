// Package proxy forwards a routed request to its upstream service over mTLS:
// a ReverseProxy per upstream behind a circuit breaker, with one retry of
// idempotent requests that never reached the upstream, and response-header
// cleaning.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/gateway/internal/reqctx"
	"github.com/rampart-go/rampart/gateway/internal/tracing"
	"github.com/rampart-go/rampart/shared/breaker"
	"github.com/rampart-go/rampart/shared/problem"
)

// Upstream is one service behind the gateway.
type Upstream struct {
	Name    string
	rp      *httputil.ReverseProxy
	breaker *breaker.Breaker
}

// Options configure an Upstream.
type Options struct {
	Name      string
	Target    *url.URL
	Transport http.RoundTripper
	Logger    *slog.Logger
	// PublicHost is sent as X-Forwarded-Host: the host clients were told
	// to use, never the Host header a client chose (host-header injection
	// into links and redirects an upstream builds).
	PublicHost string
	// Breaker, when set, guards the upstream.
	Breaker *breaker.Breaker
	// Retries is how many times an idempotent request whose connection
	// could not even be opened is tried again (default 1; -1 for none).
	Retries int
	// RetryBackoff is the pause before a retry (default 20ms).
	RetryBackoff time.Duration
	// Metrics, when set, records each upstream exchange.
	Metrics *Metrics
	// Fail writes an error answer (problem+json with the request id).
	Fail func(w http.ResponseWriter, r *http.Request, err *problem.Error)
	// BodyTooLarge answers a request whose streamed body went past its
	// limit while being forwarded: 413 and its security event.
	BodyTooLarge func(w http.ResponseWriter, r *http.Request)
	// Tracer, when set, starts a client span per upstream exchange (child
	// of the request's server span) and Propagator writes its context into
	// the forwarded request's traceparent.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// gatewayOwned are response headers the gateway sets on every answer
// itself (security headers, the request id). The upstream's copies are
// dropped, since ReverseProxy adds upstream values to ours, and two
// policies in one response are either redundant or contradictory.
var gatewayOwned = []string{
	"Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options", "X-Request-Id",
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
}

// apiCSP is the policy of API responses: they are data, never documents,
// so nothing may load and nothing may frame them. Upstreams that serve a
// page (the login form) send their own, which is kept.
const apiCSP = "default-src 'none'; frame-ancestors 'none'"

// New builds the reverse proxy for one upstream. It uses Rewrite rather
// than Director: with Rewrite, hop-by-hop headers named by the client's
// Connection header are removed before our code runs, so a client cannot
// make the proxy delete headers the gateway sets (Go #50580).
func New(o Options) *Upstream {
	if o.Retries == 0 {
		o.Retries = 1
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 20 * time.Millisecond
	}
	if o.Fail == nil {
		o.Fail = func(w http.ResponseWriter, r *http.Request, err *problem.Error) {
			problem.Write(w, err.Problem(reqctx.From(r.Context()).ID, ""))
		}
	}
	target := *o.Target
	u := &Upstream{Name: o.Name, breaker: o.Breaker}
	g := &guard{next: o.Transport, o: &o}
	u.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&target)
			// The upstream sees its own host name, not the public one.
			pr.Out.Host = target.Host
			// Forwarded and X-Forwarded-* from the client were dropped by
			// ReverseProxy (and by the front handler); these are the
			// gateway's own record: the client address it resolved
			// (trusted proxies only), the public scheme and host.
			h := pr.Out.Header
			info := reqctx.From(pr.In.Context())
			if ip := info.ClientIP; ip != "" {
				h["X-Forwarded-For"] = []string{ip}
			}
			// The request id too, although the front handler set it
			// already: a client naming X-Request-Id in Connection has had
			// that copy deleted as hop-by-hop, and the service would mint
			// an id of its own that matches nothing in the gateway's log.
			if info.ID != "" {
				h["X-Request-Id"] = []string{info.ID}
			}
			h["X-Forwarded-Proto"] = []string{"https"}
			if o.PublicHost != "" {
				h["X-Forwarded-Host"] = []string{o.PublicHost}
			}
		},
		Transport: g,
		// Without a pool ReverseProxy allocates a fresh 32 KiB copy buffer
		// per response: more than half of all bytes the gateway allocated
		// under load, and the GC work that came with them.
		BufferPool: newBufferPool(),
		// 0: a response of known length is written in one go when the
		// handler returns (one TLS record, one syscall); ReverseProxy itself
		// flushes every write of a streamed response (unknown length or
		// text/event-stream), so those are never held back. -1 here would
		// cost a flush — a record and a write(2) — per response.
		FlushInterval: 0,
		ErrorLog:      slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			h := resp.Header
			// Internal detail is no business of the client's.
			delete(h, "Server")
			delete(h, "X-Powered-By")
			for k := range h {
				if strings.HasPrefix(k, "X-Internal-") {
					delete(h, k)
				}
			}
			for _, k := range gatewayOwned {
				delete(h, k)
			}
			if len(h["Content-Security-Policy"]) == 0 {
				h["Content-Security-Policy"] = []string{apiCSP}
			}
			if info := reqctx.From(resp.Request.Context()); info.Route != nil && info.Route.NoStore {
				h["Cache-Control"] = []string{"no-store"}
				h["Pragma"] = []string{"no-cache"}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			info := reqctx.From(r.Context())
			if info.Body.Exceeded() || errors.Is(err, reqctx.ErrBodyTooLarge) {
				if o.BodyTooLarge != nil {
					o.BodyTooLarge(w, r)
					return
				}
				o.Fail(w, r, problem.New(problem.TooLarge, "request body too large"))
				return
			}
			var open *openError
			if errors.As(err, &open) {
				secs := int(math.Ceil(open.wait.Seconds()))
				w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
				o.Fail(w, r, problem.New(problem.Unavailable, "upstream unavailable; retry later"))
				return
			}
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				// The client went away; nobody is listening for an answer.
				return
			}
			var body *clientBodyError
			if errors.As(err, &body) {
				// The client's fault, not the upstream's, which saw
				// nothing. Like the framing errors net/http answers
				// itself, a transport failure, not a security decision:
				// no event (docs/gateway.md).
				if r.Context().Err() != nil {
					return
				}
				w.Header().Set("Connection", "close")
				o.Fail(w, r, problem.New(problem.Invalid, "request body incomplete: shorter than its Content-Length, or too slow"))
				return
			}
			code, msg := problem.BadGateway, "upstream unavailable"
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				code, msg = problem.Timeout, "upstream timed out"
			}
			o.Logger.WarnContext(r.Context(), "upstream error",
				slog.String("upstream", o.Name), slog.String("request_id", info.ID), slog.Any("error", err))
			o.Fail(w, r, problem.New(code, msg))
		},
	}
	return u
}

// bufferPool recycles the response copy buffers (httputil.BufferPool).
type bufferPool struct{ p sync.Pool }

// copyBufferSize is ReverseProxy's own default buffer size.
const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}}
}

func (b *bufferPool) Get() []byte { return *b.p.Get().(*[]byte) }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.p.Put(&buf)
}

// ServeHTTP forwards r.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.rp.ServeHTTP(w, r)
}

// State is the breaker's state (Closed without a breaker).
func (u *Upstream) State() breaker.State {
	if u.breaker == nil {
		return breaker.Closed
	}
	return u.breaker.State()
}

// WithTimeout bounds the upstream exchange; the response body may stream
// past it only as long as the write timeout allows.
func WithTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// openError is the guard's answer while the circuit is open.
type openError struct{ wait time.Duration }

func (e *openError) Error() string { return "circuit open" }

// guard is the round tripper in front of the transport: breaker, retries
// and metrics.
type guard struct {
	next http.RoundTripper
	o    *Options
}

func (g *guard) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if g.o.Tracer != nil {
		ctx, span := g.o.Tracer.Start(req.Context(), tracing.Method(req.Method), tracing.ClientKind...)
		if g.o.Propagator != nil {
			// req is the proxy's own copy of the client's request (its
			// header a fresh clone), made for this exchange: the one
			// place where the upstream learns its parent span.
			g.o.Propagator.Inject(ctx, tracing.HeaderCarrier(req.Header))
		}
		defer func() {
			if span.IsRecording() {
				endClientSpan(span, g.o.Name, req, resp, err)
			}
			span.End()
		}()
	}
	return g.roundTrip(req)
}

// endClientSpan sets the attributes of a recording client span (HTTP
// semantic conventions). The span ends when the response head arrives.
func endClientSpan(span trace.Span, upstream string, req *http.Request, resp *http.Response, err error) {
	span.SetAttributes(
		attribute.String("http.request.method", tracing.Method(req.Method)),
		attribute.String("server.address", req.URL.Hostname()),
		attribute.String("url.scheme", req.URL.Scheme),
		attribute.String("rampart.upstream", upstream),
	)
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetStatus(codes.Error, "")
		}
	}
}

// bufferLimit is the largest request body the gateway reads in full before
// forwarding (when its length is declared). Every API body is far smaller
// (an order, a profile, a token request).
const bufferLimit = 64 << 10

// bufferBody reads a body of declared length up to bufferLimit into memory
// before the upstream sees anything, as nginx does by default
// (proxy_request_buffering). Two things follow. A slow client trickling
// its body occupies the gateway, not an upstream connection. And the body
// can be sent again (GetBody): when a pooled upstream connection turns out
// to have been closed by the upstream before a byte of the request was
// written — the keep-alive race every proxy meets — net/http's transport
// sends the request again on a fresh connection instead of failing it,
// whatever its method, since nothing reached the upstream (it also
// replays after a failed read when the request carries Idempotency-Key,
// which the upstream de-duplicates). Larger or chunked bodies stream.
// The read goes through the route's body limit, so an oversize body still
// ends in 413.
// clientBodyError is a body the client did not deliver: it closed the
// connection, sent fewer bytes than it declared, or was too slow.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func bufferBody(req *http.Request) error {
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil ||
		req.ContentLength <= 0 || req.ContentLength > bufferLimit {
		return nil
	}
	// Grow with what arrives rather than allocating the declared length up
	// front: a client that declares 64 KiB and sends nothing must not
	// cost 64 KiB per connection it holds open.
	var b bytes.Buffer
	n, err := b.ReadFrom(io.LimitReader(req.Body, req.ContentLength))
	if err == nil && n < req.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return &clientBodyError{err: err}
	}
	buf := b.Bytes()
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(buf))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return nil
}

func (g *guard) roundTrip(req *http.Request) (*http.Response, error) {
	// Before the breaker: a client that cannot deliver its body says
	// nothing about the upstream.
	if err := bufferBody(req); err != nil {
		return nil, err
	}
	// A body too large to buffer streams from the client while the
	// upstream reads it. If the client stops part-way (a cut-off chunked
	// upload, its read deadline), the transport fails with the client's
	// read error; that is no more the upstream's fault than a short
	// buffered body is, and counting it would let any anonymous client
	// open an upstream's circuit for everyone with a few truncated
	// uploads to a public POST route.
	var streamed *streamedBody
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		streamed = &streamedBody{rc: req.Body}
		req.Body = streamed
	}
	b := g.o.Breaker
	if b != nil {
		if ok, wait := b.Allow(); !ok {
			g.o.Metrics.observe(g.o.Name, outcomeOpen, 0)
			return nil, &openError{wait: wait}
		}
	}
	var (
		resp *http.Response
		err  error
	)
	for attempt := 0; ; attempt++ {
		start := time.Now()
		resp, err = g.next.RoundTrip(req)
		g.o.Metrics.observe(g.o.Name, outcomeOf(resp, err), time.Since(start))
		if err == nil || attempt >= g.o.Retries || !retryable(req, err) {
			break
		}
		reqctx.From(req.Context()).Retries++
		g.o.Metrics.retry(g.o.Name)
		select {
		case <-req.Context().Done():
			err = req.Context().Err()
		case <-time.After(g.o.RetryBackoff):
			continue
		}
		break
	}
	if b != nil {
		switch {
		case err != nil && req.Context().Err() != nil:
			// The client left or the route's deadline passed while we
			// waited: a timeout is the upstream's failure, a cancel is not.
			if errors.Is(req.Context().Err(), context.DeadlineExceeded) {
				b.Done(false)
			} else {
				b.Abandon()
			}
		case err != nil && reqctx.From(req.Context()).Body.Exceeded():
			b.Abandon() // an oversize body is not the upstream's fault
		case err != nil && streamed.failed() != nil:
			b.Abandon() // nor is a body the client did not deliver
		case err != nil:
			b.Done(false)
		case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
			// A 503 with Retry-After is a live upstream answering at once
			// that it (or one of its own dependencies) cannot serve this
			// now: order-service when user-service is down, or when a
			// user has spent its token-exchange budget. Counting it would
			// let one route's dependency, or one user, open the circuit
			// for every route of the service; it says nothing either way.
			b.Abandon()
		default:
			b.Done(resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable &&
				resp.StatusCode != http.StatusGatewayTimeout)
		}
	}
	if err != nil && !reqctx.From(req.Context()).Body.Exceeded() {
		if cerr := streamed.failed(); cerr != nil {
			// Whatever the transport made of it: the answer is the
			// client's 400, not a 502.
			return nil, &clientBodyError{err: cerr}
		}
	}
	return resp, err
}

// streamedBody remembers the error of a failed read of the client's
// streamed body, so that the outcome can be blamed on the client.
type streamedBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *streamedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, reqctx.ErrBodyTooLarge) {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

func (b *streamedBody) Close() error { return b.rc.Close() }

// failed returns the client's read error, if a read failed (nil-safe).
func (b *streamedBody) failed() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// retryable: only idempotent methods (RFC 9110 §9.2.2), only when the body
// can be sent again, and only when the connection could not be opened, so
// the upstream cannot have seen a byte of the request.
func retryable(req *http.Request, err error) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
