// Package httpapi is the gateway's front door: request hygiene, header
// hygiene, routing, the edge token check, rate limits, CORS and security
// headers, in front of the per-upstream proxies. The order of the checks in
// serve is the order a request meets them; each refusal is one
// problem+json answer and exactly one security event.
package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/gateway/internal/accesslog"
	"github.com/rampart-go/rampart/gateway/internal/edgeauth"
	"github.com/rampart-go/rampart/gateway/internal/hygiene"
	"github.com/rampart-go/rampart/gateway/internal/ratelimit"
	"github.com/rampart-go/rampart/gateway/internal/reqctx"
	"github.com/rampart-go/rampart/gateway/internal/route"
	"github.com/rampart-go/rampart/gateway/internal/tracing"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/tokens"
)

// Emitter records security events.
type Emitter interface {
	Emit(ctx context.Context, ev secevent.Event)
}

// Limits are the request-size limits applied before routing.
type Limits struct {
	// MaxURLBytes bounds the request target (414 above it).
	MaxURLBytes int
	// Header bounds header count and size (431 above them).
	Header hygiene.HeaderLimits
	// MaxBodyAPI and MaxBodyForm bound request bodies per route class
	// (413 above them, counted as the body streams).
	MaxBodyAPI, MaxBodyForm int64
}

// DefaultLimits are the limits when Deps leaves them zero.
var DefaultLimits = Limits{
	MaxURLBytes: 8 << 10,
	Header:      hygiene.HeaderLimits{MaxCount: 100, MaxBytes: 16 << 10},
	MaxBodyAPI:  1 << 20,
	MaxBodyForm: 64 << 10,
}

// RateLimits are the limits the handler applies.
type RateLimits struct {
	// Anonymous is per client address, for requests without a verified
	// token (and for every token verification that misses the cache, so
	// forged tokens spend the sender's address budget).
	Anonymous *ratelimit.Limit
	// Authenticated is per token subject.
	Authenticated *ratelimit.Limit
	// Named are the stricter per-address limits of routes with a Limit.
	Named map[string]*ratelimit.Limit
}

// Deps are the gateway handler's collaborators.
type Deps struct {
	Table     []route.Route
	Upstreams map[string]http.Handler
	Events    Emitter
	Metrics   *server.Metrics
	// Health answers /healthz and /readyz on the public listener.
	Health http.Handler
	// Limits default to DefaultLimits field by field.
	Limits Limits
	// ClientIP resolves client addresses (trusted proxies).
	ClientIP hygiene.ClientIP
	// Auth checks tokens on non-public routes. Nil refuses every
	// non-public request (fail closed), as a misconfigured edge must.
	Auth *edgeauth.Checker
	// Limiter and RateLimits: no limiter, no rate limiting.
	Limiter    *ratelimit.Limiter
	RateLimits RateLimits
	// CORSOrigins are the exact origins allowed to call the API from a
	// browser; none by default.
	CORSOrigins []string
	// AccessLog receives one JSON line per request; nil for none.
	AccessLog *accesslog.Log
	// Tracer starts the server span of each request, continuing the trace
	// context Propagator extracts (TraceGuard has already dropped an
	// untrusted caller's); nil for no spans.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Observer, when set, is told the outcome of each token check
	// (cache-hit metrics).
	TokenObserver func(hit bool)
}

// Handler is the gateway's root handler.
type Handler struct {
	Deps
	cors map[string]struct{}
}

// New returns the root handler.
func New(d Deps) *Handler {
	def := DefaultLimits
	l := &d.Limits
	if l.MaxURLBytes <= 0 {
		l.MaxURLBytes = def.MaxURLBytes
	}
	if l.Header.MaxCount <= 0 {
		l.Header.MaxCount = def.Header.MaxCount
	}
	if l.Header.MaxBytes <= 0 {
		l.Header.MaxBytes = def.Header.MaxBytes
	}
	if l.MaxBodyAPI <= 0 {
		l.MaxBodyAPI = def.MaxBodyAPI
	}
	if l.MaxBodyForm <= 0 {
		l.MaxBodyForm = def.MaxBodyForm
	}
	h := &Handler{Deps: d, cors: map[string]struct{}{}}
	for _, o := range d.CORSOrigins {
		h.cors[o] = struct{}{}
	}
	return h
}

// RequestID returns the id the gateway assigned to r.
func RequestID(r *http.Request) string { return reqctx.From(r.Context()).ID }

// ServeHTTP handles one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// The gateway is where a request id is born: a client-sent one is never
	// trusted, since it would let a caller forge log correlation.
	info := &reqctx.Info{ID: server.NewRequestID()}
	info.ClientIP, _ = h.ClientIP.Resolve(r)
	ctx := r.Context()
	var span trace.Span
	if h.Tracer != nil {
		if h.Propagator != nil {
			ctx = h.Propagator.Extract(ctx, tracing.HeaderCarrier(r.Header))
		}
		ctx, span = h.Tracer.Start(ctx, tracing.ServerSpanName(r.Method), tracing.ServerKind...)
	}
	// One request clone carries the span and the request record.
	r = r.WithContext(reqctx.With(ctx, info))
	r.Header[server.HeaderRequestID] = []string{info.ID}
	wh := w.Header()
	wh[server.HeaderRequestID] = []string{info.ID}
	setSecurityHeaders(wh)

	sw := statusWriter{ResponseWriter: w}
	routeName := h.serve(&sw, r, info)
	d := time.Since(start)
	status := sw.status()
	var sc trace.SpanContext
	if span != nil {
		sc = span.SpanContext()
		if span.IsRecording() {
			endServerSpan(span, r, info, routeName, status)
		}
		span.End()
	}
	h.Metrics.Observe(sc, routeName, r.Method, status, d)
	if h.AccessLog != nil {
		e := accesslog.Entry{
			Time: start.Add(d), RequestID: info.ID, Method: tracing.Method(r.Method), Route: routeName,
			Status: status, Bytes: sw.written, Duration: d, ClientIP: info.ClientIP, Proto: r.Proto,
			Subject: info.Subject, ClientID: info.ClientID, Retries: info.Retries,
		}
		if sc.IsValid() {
			e.TraceID, e.SpanID = sc.TraceID(), sc.SpanID()
		}
		if info.Route != nil {
			e.Upstream = info.Route.Upstream
		}
		// Never the path's query, a header, a token or a body: the route
		// name says what was called.
		h.AccessLog.Write(&e)
	}
}

// endServerSpan sets the attributes of a recording server span, named as
// in the OpenTelemetry HTTP semantic conventions. Only spans that will be
// exported pay for them.
func endServerSpan(span trace.Span, r *http.Request, info *reqctx.Info, routeName string, status int) {
	span.SetAttributes(
		attribute.String("http.request.method", tracing.Method(r.Method)),
		attribute.String("http.route", routeName),
		attribute.Int("http.response.status_code", status),
		attribute.String("url.scheme", "https"),
		attribute.String("network.protocol.version", strings.TrimPrefix(r.Proto, "HTTP/")),
		attribute.String("client.address", info.ClientIP),
	)
	if status >= 500 {
		span.SetStatus(codes.Error, "")
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, info *reqctx.Info) string {
	// Framing first: its verdicts are queued per request on the
	// connection and must be taken for every request, refused or not.
	if hygiene.FramingVerdict(r.Context()) != hygiene.FrameOK {
		// The byte stream after an ambiguous head cannot be trusted.
		w.Header().Set("Connection", "close")
		h.reject(w, r, secevent.ReasonSmuggling, problem.New(problem.Invalid, "ambiguous message framing"))
		return "rejected"
	}
	if len(r.RequestURI) > h.Limits.MaxURLBytes {
		h.reject(w, r, secevent.ReasonURLTooLong, problem.New(problem.URITooLong, "request target too long"))
		return "rejected"
	}
	rawPath, _, ok := hygiene.SplitTarget(r.RequestURI)
	if !ok {
		h.reject(w, r, secevent.ReasonBadPath, problem.New(problem.Invalid, "malformed request target"))
		return "rejected"
	}
	if rawPath == "/internal" || strings.HasPrefix(rawPath, "/internal/") {
		// Internal routes exist only on the service mesh; at the edge they
		// are indistinguishable from any other unknown path, however
		// they are spelled after the prefix.
		h.fail(w, r, problem.New(problem.NotFound, "no such resource"))
		return "unmatched"
	}
	p, verdict := hygiene.CanonicalPath(rawPath)
	if verdict != hygiene.PathOK {
		h.reject(w, r, secevent.ReasonBadPath, problem.New(problem.Invalid, "malformed request path"))
		return "rejected"
	}
	switch hygiene.CheckHeaders(r.Header, h.Limits.Header) {
	case hygiene.HeaderTooMany:
		h.reject(w, r, secevent.ReasonTooManyHeaders, problem.New(problem.HeadersTooLarge, "too many header fields"))
		return "rejected"
	case hygiene.HeaderTooLarge:
		h.reject(w, r, secevent.ReasonHeadersTooLarge, problem.New(problem.HeadersTooLarge, "header fields too large"))
		return "rejected"
	case hygiene.HeaderUpgrade:
		h.reject(w, r, secevent.ReasonUpgrade, problem.New(problem.Invalid, "protocol upgrades are not supported"))
		return "rejected"
	}

	if p == "/healthz" || p == "/readyz" {
		// The health mux would answer another method with its own
		// plain-text 405, without the problem body and the event every
		// other refusal has.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			h.reject(w, r, secevent.ReasonBadMethod, problem.New(problem.MethodNotAllowed, "method not allowed on this route"))
			return "health"
		}
		h.Health.ServeHTTP(w, r)
		return "health"
	}
	if strings.HasPrefix(p, "/internal/") || p == "/internal" {
		h.fail(w, r, problem.New(problem.NotFound, "no such resource"))
		return "unmatched"
	}
	rt, ok := route.Match(h.Table, p)
	if !ok {
		if route.MatchesFolded(h.Table, p) {
			h.reject(w, r, secevent.ReasonBadPath, problem.New(problem.Invalid, "malformed request path"))
			return "rejected"
		}
		h.fail(w, r, problem.New(problem.NotFound, "no such resource"))
		return "unmatched"
	}
	info.Route = rt
	if h.corsHeaders(w, r) && r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.preflight(w, r, rt)
		return rt.Name
	}
	if !rt.Allows(r.Method) {
		w.Header().Set("Allow", strings.Join(rt.Methods, ", "))
		h.reject(w, r, secevent.ReasonBadMethod, problem.New(problem.MethodNotAllowed, "method not allowed on this route"))
		return rt.Name
	}
	if !h.limitBody(w, r, rt, info) {
		return rt.Name
	}

	var claims *tokens.Claims
	if !rt.Public {
		if claims, ok = h.authenticate(w, r, info); !ok {
			return rt.Name
		}
	}
	if !h.rateLimit(w, r, rt, info, claims) {
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

// limitBody refuses a declared length over the route's limit at once and
// otherwise counts the body as the proxy streams it.
func (h *Handler) limitBody(w http.ResponseWriter, r *http.Request, rt *route.Route, info *reqctx.Info) bool {
	limit := h.Limits.MaxBodyAPI
	if rt.Class == route.ClassForm {
		limit = h.Limits.MaxBodyForm
	}
	if r.ContentLength > limit {
		// The rest of the body is not read: close rather than drain it.
		w.Header().Set("Connection", "close")
		h.reject(w, r, secevent.ReasonBodyTooLarge, problem.New(problem.TooLarge, "request body too large"))
		return false
	}
	if r.Body != nil && r.Body != http.NoBody {
		info.Body = &reqctx.LimitedBody{R: r.Body, Max: limit}
		r.Body = info.Body
	}
	return true
}

// BodyTooLarge answers a request whose body went over its limit while it
// was being forwarded (proxy.Options.BodyTooLarge).
func (h *Handler) BodyTooLarge(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	h.reject(w, r, secevent.ReasonBodyTooLarge, problem.New(problem.TooLarge, "request body too large"))
}

// authenticate is the edge token check, with the semantics of the shared
// authn middleware: no token → 401 with a bare Bearer challenge (RFC 6750
// §3.1); any rejected token → 401 invalid_token, the same body whatever
// the reason, and one token.rejected event with the verifier's reason.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, info *reqctx.Info) (*tokens.Claims, bool) {
	raw, err := tokens.BearerToken(r.Header.Get("Authorization"))
	var claims *tokens.Claims
	switch {
	case err != nil:
	case h.Auth == nil:
		err = &tokens.Error{Reason: tokens.ReasonUnknownKey} // no verifier: fail closed
	default:
		var (
			k   edgeauth.Key
			hit bool
		)
		k, claims, hit, err = h.Auth.Cached(r.Context(), raw)
		info.CacheHit = hit
		if h.TokenObserver != nil {
			h.TokenObserver(hit)
		}
		if !hit {
			// A verification costs real CPU; tokens not seen before are
			// paid for from the sender's address budget first, so a flood
			// of forged tokens is limited like any anonymous flood.
			if !h.take(w, r, info, h.RateLimits.Anonymous, rateKey(info.ClientIP)) {
				return nil, false
			}
			claims, err = h.Auth.VerifyAndStore(r.Context(), k, raw)
		}
	}
	if err == nil {
		info.Subject, info.ClientID = claims.Subject, claims.ClientID
		return claims, true
	}
	if errors.Is(err, edgeauth.ErrNotReady) {
		// Not the token's fault (a 401 would make the client drop a good
		// token) and not a refusal of the client: the gateway is not
		// ready yet, as with an open circuit, so no security event.
		w.Header().Set("Retry-After", "1")
		h.fail(w, r, problem.New(problem.Unavailable, "not ready; retry shortly"))
		return nil, false
	}
	reason := tokens.ReasonOf(err)
	h.Events.Emit(r.Context(), secevent.Event{
		Type: secevent.TokenRejected, Reason: secevent.Reason(reason),
		ClientIP: info.ClientIP, Route: routeName(info), RequestID: info.ID,
	})
	challenge := `Bearer realm="rampart"`
	msg := "a bearer access token is required"
	if reason != tokens.ReasonMissing {
		challenge += `, error="invalid_token"`
		msg = "the access token is invalid"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	h.fail(w, r, problem.New(problem.Unauthenticated, msg))
	return nil, false
}

// rateLimit applies the route's named limit per client address, else the
// per-subject limit for a verified token, else the per-address anonymous
// limit; it sets the RateLimit-* headers and on refusal answers 429 with
// Retry-After and one ratelimit.exceeded event naming the limit.
func (h *Handler) rateLimit(w http.ResponseWriter, r *http.Request, rt *route.Route, info *reqctx.Info, claims *tokens.Claims) bool {
	if h.Limiter == nil {
		return true
	}
	lim, key := h.RateLimits.Anonymous, rateKey(info.ClientIP)
	switch {
	case rt.Limit != "":
		if n := h.RateLimits.Named[rt.Limit]; n != nil {
			lim = n
		}
	case claims != nil && h.RateLimits.Authenticated != nil:
		lim, key = h.RateLimits.Authenticated, claims.Subject
	}
	if lim == nil {
		return true
	}
	return h.take(w, r, info, lim, key)
}

// take spends one request of key's budget in lim, sets the RateLimit-*
// headers, and on refusal answers 429.
func (h *Handler) take(w http.ResponseWriter, r *http.Request, info *reqctx.Info, lim *ratelimit.Limit, key string) bool {
	if h.Limiter == nil || lim == nil {
		return true
	}
	d := h.Limiter.Allow(r.Context(), lim, key)
	wh := w.Header()
	wh["Ratelimit-Limit"] = []string{strconv.Itoa(d.Limit)}
	wh["Ratelimit-Remaining"] = []string{strconv.Itoa(d.Remaining)}
	wh["Ratelimit-Reset"] = []string{strconv.Itoa(ceilSeconds(d.Reset))}
	if d.Allowed {
		return true
	}
	wh["Retry-After"] = []string{strconv.Itoa(max(1, ceilSeconds(d.RetryAfter)))}
	h.Events.Emit(r.Context(), secevent.Event{
		Type: secevent.RateLimitExceeded, Reason: secevent.Reason(lim.Name), Subject: info.Subject,
		ClientID: info.ClientID, ClientIP: info.ClientIP, Route: routeName(info), RequestID: info.ID,
	})
	h.fail(w, r, problem.New(problem.RateLimited, "too many requests"))
	return false
}

// rateKey is the anonymous budget's key: the IPv4 address, or the /64 of
// an IPv6 address — one host usually holds a whole /64, so per-address
// keys would give it 2^64 budgets.
func rateKey(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4In6() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// corsHeaders adds the CORS response headers for an allowed Origin and
// reports whether the origin was allowed. Only exact origins from the
// configuration are echoed; no wildcard, no credentials (the API takes
// bearer tokens, not cookies).
func (h *Handler) corsHeaders(w http.ResponseWriter, r *http.Request) bool {
	if len(h.cors) == 0 {
		return false
	}
	wh := w.Header()
	wh.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if _, ok := h.cors[origin]; !ok || origin == "" {
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			return true // a preflight from another origin: refused in preflight
		}
		return false
	}
	wh.Set("Access-Control-Allow-Origin", origin)
	wh.Set("Access-Control-Expose-Headers", "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, X-Request-Id")
	return true
}

// corsRequestHeaders are the request headers a browser may send
// cross-origin beyond the CORS-safelisted ones.
var corsRequestHeaders = map[string]bool{"authorization": true, "content-type": true, "idempotency-key": true, "if-match": true}

// preflight answers an OPTIONS preflight for an allowed origin, method and
// headers with 204, and refuses anything else with 403 and one
// request.rejected/bad_header event.
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request, rt *route.Route) {
	_, originOK := h.cors[r.Header.Get("Origin")]
	method := r.Header.Get("Access-Control-Request-Method")
	ok := originOK && rt.Allows(method)
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for _, name := range strings.Split(v, ",") {
			name = strings.ToLower(textproto.TrimString(name))
			if name != "" && !corsRequestHeaders[name] {
				ok = false
			}
		}
	}
	if !ok {
		wh := w.Header()
		wh.Del("Access-Control-Allow-Origin")
		wh.Del("Access-Control-Expose-Headers")
		h.reject(w, r, secevent.ReasonBadHeader, problem.New(problem.Forbidden, "cross-origin request not allowed"))
		return
	}
	wh := w.Header()
	wh.Set("Access-Control-Allow-Methods", strings.Join(rt.Methods, ", "))
	wh.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, If-Match")
	wh.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

func routeName(info *reqctx.Info) string {
	if info.Route == nil {
		return ""
	}
	return info.Route.Name
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, reason secevent.Reason, err *problem.Error) {
	info := reqctx.From(r.Context())
	h.Events.Emit(r.Context(), secevent.Event{
		Type: secevent.RequestRejected, Reason: reason, ClientIP: info.ClientIP, RequestID: info.ID,
		Route: routeName(info), Subject: info.Subject,
	})
	h.fail(w, r, err)
}

// Fail writes err as problem+json with the request id.
func (h *Handler) Fail(w http.ResponseWriter, r *http.Request, err *problem.Error) { h.fail(w, r, err) }

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err *problem.Error) {
	w.Header().Set("Content-Security-Policy", apiCSP)
	problem.Write(w, err.Problem(RequestID(r), ""))
}

const apiCSP = "default-src 'none'; frame-ancestors 'none'"

// identityHeaderPrefixes are header name prefixes a client could use to
// claim an identity or steer internal routing. Services never trust headers
// for identity (they verify the token and the mTLS peer), but a copied
// service might: the edge removes them all.
var identityHeaderPrefixes = []string{"X-User-", "X-Internal-", "X-Forwarded-", "X-Authenticated-", "X-Auth-", "X-Remote-", "X-Spiffe-", "X-Client-Cert", "X-Envoy-", "X-Amzn-"}

// identityHeaders are exact header names with the same risk, plus
// method-override headers, which would let a client bypass the method
// allowlist at a service that honours them, and X-Idempotency-Key: net/http's
// transport takes it (like Idempotency-Key) as leave to send a POST again
// after a failed read, but our services de-duplicate only Idempotency-Key,
// so the second copy would be a second order.
var identityHeaders = []string{"X-Idempotency-Key", "Forwarded", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Original-Method", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Service-Identity", "X-Subject", "X-Roles", "X-Scopes", "Client-Ip", "X-Cluster-Client-Ip", "Via"}

// StripIdentityHeaders removes every header in the identity lists from h.
func StripIdentityHeaders(h http.Header) {
	for k := range h {
		ck := k
		if !isCanonical(k) {
			// HTTP/1 keys are canonical already; HTTP/2 ones are lower
			// case and canonicalised by net/http too, but be sure.
			ck = textproto.CanonicalMIMEHeaderKey(k)
		}
		for _, p := range identityHeaderPrefixes {
			if strings.HasPrefix(ck, p) {
				delete(h, k)
				break
			}
		}
	}
	for _, k := range identityHeaders {
		delete(h, k)
	}
}

func isCanonical(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// securityHeaders are set on every answer, the gateway's own and the
// proxied ones (the proxy drops the upstream's copies).
func setSecurityHeaders(h http.Header) {
	h["Strict-Transport-Security"] = hsts
	h["X-Content-Type-Options"] = nosniff
	h["Referrer-Policy"] = noReferrer
	h["X-Frame-Options"] = deny
}

// Shared, never-modified header values: net/http only reads them, so one
// slice serves every response without an allocation.
var (
	hsts       = []string{"max-age=63072000; includeSubDomains"}
	nosniff    = []string{"nosniff"}
	noReferrer = []string{"no-referrer"}
	deny       = []string{"DENY"}
)

type statusWriter struct {
	http.ResponseWriter
	code    int
	written int64
}

func (s *statusWriter) WriteHeader(code int) {
	// An informational answer (103 Early Hints from an upstream, which
	// ReverseProxy passes on) precedes the real one: the access log and
	// the RED metrics want the final status.
	if s.code == 0 && code >= 200 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.written += int64(n)
	return n, err
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
