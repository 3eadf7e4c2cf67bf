// Package httpapi is the gateway's front door: request hygiene, header
// hygiene, routing and security headers, in front of the per-upstream proxies.
package httpapi

import (
	"context"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/gateway/internal/route"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
)

// Emitter records security events.
type Emitter interface {
	Emit(ctx context.Context, ev secevent.Event)
}

// Deps are the gateway handler's collaborators.
type Deps struct {
	Table     []route.Route
	Upstreams map[string]http.Handler
	Events    Emitter
	Metrics   *server.Metrics
	// Health answers /healthz and /readyz on the public listener.
	Health http.Handler
}

// Handler is the gateway's root handler.
type Handler struct{ Deps }

// New returns the root handler.
func New(d Deps) *Handler { return &Handler{d} }

type ctxKey struct{}

// RequestID returns the id the gateway assigned to r.
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(ctxKey{}).(string)
	return id
}

// ServeHTTP routes one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// The gateway is where a request id is born: a client-sent one is never
	// trusted, since it would let a caller forge log correlation.
	id := server.NewRequestID()
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
	r.Header.Set(server.HeaderRequestID, id)
	w.Header().Set(server.HeaderRequestID, id)
	setSecurityHeaders(w.Header())

	sw := &statusWriter{ResponseWriter: w}
	routeName := h.serve(sw, r)
	h.Metrics.Observe(trace.SpanContextFromContext(r.Context()), routeName, r.Method, sw.status(), time.Since(start))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) string {
	p := r.URL.Path
	if !cleanPath(p) || r.URL.RawPath != "" && !cleanPath(r.URL.RawPath) {
		h.reject(w, r, secevent.Reason("bad_path"), problem.New(problem.Invalid, "malformed request path"))
		return "rejected"
	}
	if p == "/healthz" || p == "/readyz" {
		h.Health.ServeHTTP(w, r)
		return "health"
	}
	if strings.HasPrefix(p, "/internal/") || p == "/internal" {
		// Internal routes exist only on the service mesh; at the edge they
		// are indistinguishable from any other unknown path.
		h.fail(w, r, problem.New(problem.NotFound, "no such resource"))
		return "unmatched"
	}
	rt, ok := route.Match(h.Table, p)
	if !ok {
		h.fail(w, r, problem.New(problem.NotFound, "no such resource"))
		return "unmatched"
	}
	if !rt.Allows(r.Method) {
		w.Header().Set("Allow", strings.Join(rt.Methods, ", "))
		h.reject(w, r, secevent.Reason("bad_method"), problem.New(problem.MethodNotAllowed, "method not allowed on this route"))
		return rt.Name
	}
	up, ok := h.Upstreams[rt.Upstream]
	if !ok {
		h.fail(w, r, problem.New(problem.Unavailable, "upstream not configured"))
		return rt.Name
	}
	StripIdentityHeaders(r.Header)
	up.ServeHTTP(w, r)
	return rt.Name
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, reason secevent.Reason, err *problem.Error) {
	h.Events.Emit(r.Context(), secevent.Event{
		Type: secevent.RequestRejected, Reason: reason, ClientIP: clientIP(r), RequestID: RequestID(r),
	})
	h.fail(w, r, err)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err *problem.Error) {
	problem.Write(w, err.Problem(RequestID(r), ""))
}

// cleanPath accepts only paths that are already in canonical form: absolute,
// no empty, "." or ".." segments, no backslash, NUL or control bytes. Such a
// path means the same thing to the gateway and to every upstream.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(p, "//")
}

func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// identityHeaderPrefixes are header name prefixes a client could use to
// claim an identity or steer internal routing. Services never trust headers
// for identity (they verify the token and the mTLS peer), but a copied
// service might: the edge removes them all.
var identityHeaderPrefixes = []string{"X-User-", "X-Internal-", "X-Forwarded-", "X-Authenticated-", "X-Auth-", "X-Remote-", "X-Spiffe-", "X-Client-Cert"}

// identityHeaders are exact header names with the same risk, plus
// method-override headers, which would let a client bypass the method
// allowlist at a service that honours them.
var identityHeaders = []string{"Forwarded", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Service-Identity"}

// StripIdentityHeaders removes every header in the identity lists from h.
func StripIdentityHeaders(h http.Header) {
	for k := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		for _, p := range identityHeaderPrefixes {
			if strings.HasPrefix(ck, p) {
				delete(h, k)
			}
		}
	}
	for _, k := range identityHeaders {
		h.Del(k)
	}
}

func setSecurityHeaders(h http.Header) {
	h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// Flush lets streamed responses through the status recorder.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
