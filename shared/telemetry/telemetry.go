// Package telemetry sets up the three signals every Rampart process emits:
// structured JSON logs that carry the current trace and span ids, OpenTelemetry
// traces (exported over OTLP/HTTP when an endpoint is configured) and a
// per-service Prometheus registry.
//
// Nothing here touches process-global state: the tracer provider, propagator
// and registry are returned to the caller, who passes them down. That is what
// lets devstack and the end-to-end tests run four services in one process,
// each with its own /metrics.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configures New.
type Options struct {
	// Service is the service name: the OpenTelemetry service.name, the
	// "service" attribute on every log line.
	Service string
	// Version is stamped on traces and logs (service.version).
	Version string
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string
	// LogWriter receives JSON log lines; default os.Stderr.
	LogWriter io.Writer
	// OTLPEndpoint is the OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT).
	// Empty means spans carry a trace context (so trace ids reach logs,
	// exemplars and downstream services) but are never exported; with no
	// SpanProcessors and no Sampler either, they are not even recorded.
	OTLPEndpoint string
	// SpanProcessors are added to the tracer provider; tests use an
	// in-memory recorder here to assert on spans.
	SpanProcessors []sdktrace.SpanProcessor
	// Sampler overrides the default parent-based always-on sampler.
	Sampler sdktrace.Sampler
}

// Telemetry holds one service's logger, tracer provider, propagator and
// metrics registry.
type Telemetry struct {
	Service        string
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	Registry       *prometheus.Registry

	provider *sdktrace.TracerProvider
}

// New builds the telemetry of one service. It returns an error for an
// unusable OTLP endpoint or log level.
func New(ctx context.Context, o Options) (*Telemetry, error) {
	if o.Service == "" {
		return nil, errors.New("telemetry: service name is required")
	}
	level, err := ParseLevel(o.LogLevel)
	if err != nil {
		return nil, err
	}
	w := o.LogWriter
	if w == nil {
		w = os.Stderr
	}
	base := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	logger := slog.New(NewTraceHandler(base)).With(slog.String("service", o.Service))

	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", o.Service),
		attribute.String("service.version", o.Version),
		attribute.String("service.namespace", "rampart"),
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	sampler := o.Sampler
	if sampler == nil {
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	if o.OTLPEndpoint == "" && len(o.SpanProcessors) == 0 && o.Sampler == nil {
		// Nothing would ever see a recorded span: propagate trace context
		// without recording (see propagatingProvider).
		return &Telemetry{
			Service:        o.Service,
			Logger:         logger,
			TracerProvider: &propagatingProvider{},
			Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
			Registry:       newRegistry(),
		}, nil
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if o.OTLPEndpoint != "" {
		exp, err := newExporter(ctx, o.OTLPEndpoint)
		if err != nil {
			return nil, err
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	for _, sp := range o.SpanProcessors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	return &Telemetry{
		Service:        o.Service,
		Logger:         logger,
		TracerProvider: tp,
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:       newRegistry(),
		provider:       tp,
	}, nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Tracer is a shorthand for the service's named tracer.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// Shutdown flushes and stops span export. Call it last, after the servers
// have drained, so the spans of the final requests are not lost.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil // nothing recorded, nothing to flush
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown tracer provider: %w", err)
	}
	return nil
}

// newExporter accepts the OTEL_EXPORTER_OTLP_ENDPOINT form (a base URL such as
// http://collector:4318); the SDK appends /v1/traces itself.
func newExporter(ctx context.Context, endpoint string) (sdktrace.SpanExporter, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("telemetry: OTLP endpoint %q must be an http(s) URL", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(strings.TrimRight(endpoint, "/") + "/v1/traces")}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	return exp, nil
}

// ParseLevel maps debug|info|warn|error ("" = info) to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("telemetry: unknown log level %q", s)
}

// TraceHandler adds trace_id and span_id to every record logged with a
// context that carries a valid span, so a log line can be joined to its trace.
type TraceHandler struct{ next slog.Handler }

// NewTraceHandler wraps next.
func NewTraceHandler(next slog.Handler) *TraceHandler { return &TraceHandler{next: next} }

// Enabled implements slog.Handler.
func (h *TraceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *TraceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &TraceHandler{next: h.next.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h *TraceHandler) WithGroup(name string) slog.Handler {
	return &TraceHandler{next: h.next.WithGroup(name)}
}
