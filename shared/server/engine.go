// Package server is the HTTP bootstrap every Rampart service shares: a gin
// engine with the platform middleware (panic recovery, request ids, tracing,
// RED metrics, body limits, problem+json errors), the strict JSON binding
// every handler uses, the ops listener (/metrics, /healthz, /readyz) and a
// runner that serves listeners until the context ends and then drains them.
package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/shared/jsonx"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/telemetry"
)

// HeaderRequestID carries the request id between the gateway, the services
// and the client. A service accepts the gateway's id (it arrives over mTLS)
// if it is well-formed, so one id follows a request through every hop.
const HeaderRequestID = "X-Request-Id"

// DefaultMaxBodyBytes is the request body limit when Options leaves it zero.
const DefaultMaxBodyBytes = 1 << 20

// Options configures NewEngine.
type Options struct {
	// Telemetry supplies the logger, tracer provider, propagator and the
	// registry the HTTP metrics are registered on.
	Telemetry *telemetry.Telemetry
	// MaxBodyBytes caps every request body (default 1 MiB); a larger body is
	// refused with 413 when the handler reads it.
	MaxBodyBytes int64
	// Metrics is shared by the engines of one service (API and internal);
	// nil creates and registers a new set.
	Metrics *Metrics
}

// NewEngine returns a gin engine with the platform middleware installed, in
// the order that makes each one see what it needs: request id first (so a
// panic's log line has it), then tracing, metrics, recovery and the error
// renderer. Routes without a match answer 404/405 as problem+json.
func NewEngine(o Options) (*gin.Engine, error) {
	// gin's mode is process-wide; release mode only silences its debug
	// banner, and setting it repeatedly is harmless.
	gin.SetMode(gin.ReleaseMode)
	if o.Telemetry == nil {
		return nil, errors.New("server: telemetry is required")
	}
	m := o.Metrics
	if m == nil {
		var err error
		if m, err = NewMetrics(o.Telemetry.Registry); err != nil {
			return nil, err
		}
	}
	limit := o.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	log := o.Telemetry.Logger

	e := gin.New()
	// Services sit behind the gateway over mTLS: the client address they see
	// is the gateway's, and no forwarded header is believed (gin trusts every
	// proxy unless told otherwise; gin #2473).
	if err := e.SetTrustedProxies(nil); err != nil {
		return nil, err
	}
	e.ForwardedByClientIP = false
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(
		withLogger(log),
		requestID(),
		otelgin.Middleware(o.Telemetry.Service,
			otelgin.WithTracerProvider(o.Telemetry.TracerProvider),
			otelgin.WithPropagators(o.Telemetry.Propagator),
			otelgin.WithMeterProvider(noop.NewMeterProvider()),
		),
		m.middleware(),
		recovery(log),
		bodyLimit(limit),
		renderErrors(),
	)
	e.NoRoute(func(c *gin.Context) { Fail(c, problem.New(problem.NotFound, "no such resource")) })
	e.NoMethod(func(c *gin.Context) {
		Fail(c, problem.New(problem.MethodNotAllowed, "method not allowed on this resource"))
	})
	return e, nil
}

// RequestID returns the request id assigned by the middleware.
func RequestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

const ctxRequestID = "rampart.request_id"

func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(HeaderRequestID)
		if !ValidRequestID(id) {
			id = NewRequestID()
		}
		c.Set(ctxRequestID, id)
		c.Header(HeaderRequestID, id)
		c.Next()
	}
}

// NewRequestID returns 128 random bits, hex encoded.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// ValidRequestID accepts 8 to 64 characters of [A-Za-z0-9_-]: enough for
// UUIDs and hex ids, nothing that could inject into a log line or header.
func ValidRequestID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		//nolint:staticcheck // QF1001: an allowlist reads clearer stated positively
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// recovery turns a panic into a logged stack and a problem+json 500. The
// connection stays usable and the process keeps running. http.ErrAbortHandler
// is re-raised: it is net/http's deliberate way to abort a response.
func recovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if err, ok := rec.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(rec)
			}
			log.ErrorContext(c.Request.Context(), "panic in handler",
				slog.Any("panic", rec), slog.String("stack", string(debug.Stack())),
				slog.String("request_id", RequestID(c)), slog.String("route", c.FullPath()))
			span := trace.SpanFromContext(c.Request.Context())
			span.SetStatus(codes.Error, "panic")
			if c.Writer.Written() {
				c.Abort()
				return
			}
			Fail(c, problem.New(problem.Internal, "internal error"))
		}()
		c.Next()
	}
}

func bodyLimit(limit int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > limit {
			Fail(c, problem.Errorf(problem.TooLarge, "request body exceeds %d bytes", limit))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
		c.Next()
	}
}

// renderErrors renders the last error a handler attached with c.Error when
// the handler did not write a response itself.
func renderErrors() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if len(c.Errors) == 0 || c.Writer.Written() {
			return
		}
		Fail(c, c.Errors.Last().Err)
	}
}

// Fail renders err as RFC 9457 problem+json and aborts the chain. Internal
// errors are logged with their cause and shown with a generic message; the
// request id in both lets an operator match the two.
func Fail(c *gin.Context, err error) {
	pe := problem.From(err)
	status := problem.Status(pe.Code)
	span := trace.SpanFromContext(c.Request.Context())
	if status >= 500 {
		span.SetStatus(codes.Error, string(pe.Code))
		if pe.Err != nil || pe.Code == problem.Internal {
			span.RecordError(err)
		}
		slogFrom(c).ErrorContext(c.Request.Context(), "request failed",
			slog.String("code", string(pe.Code)), slog.Any("error", err),
			slog.String("request_id", RequestID(c)), slog.String("route", c.FullPath()))
	}
	p := pe.Problem(RequestID(c), c.Request.URL.Path)
	problem.Write(c.Writer, p)
	c.Abort()
}

// slogFrom returns the logger stored by withLogger, or a discarding one for
// engines built without NewEngine.
func slogFrom(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		if lg, ok := l.(*slog.Logger); ok {
			return lg
		}
	}
	return slog.New(slog.DiscardHandler)
}

const ctxLogger = "rampart.logger"

// withLogger stores the service logger on every request so Fail can log
// internal errors.
func withLogger(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) { c.Set(ctxLogger, log); c.Next() }
}

// BindJSON decodes the request body strictly into v (see jsonx.Decode). On
// failure it renders the 400/413 problem and returns false; the handler
// simply returns.
func BindJSON(c *gin.Context, v any) bool {
	if err := jsonx.Decode(c.Request.Body, v); err != nil {
		Fail(c, err)
		return false
	}
	return true
}

// RetryAfter sets the Retry-After header in whole seconds (at least 1).
func RetryAfter(c *gin.Context, d time.Duration) {
	s := int(d.Round(time.Second) / time.Second)
	if s < 1 {
		s = 1
	}
	c.Header("Retry-After", strconv.Itoa(s))
}
