package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// propagatingProvider is the tracer provider of a process that exports no
// spans (no OTLP endpoint, no span processor, default sampler). It keeps
// everything tracing is for besides export — every span has a valid span
// context, a trace id is minted at the root and carried on from a parent,
// the sampled flag follows the parent (or is set at a root, as the SDK's
// parent-based always-on sampler would), so downstream services, log lines,
// exemplars and NATS headers carry the same trace — but records nothing:
// no span object, no attribute slices, no end-of-span processing. The SDK
// provider with no processor does all of that work and then throws it away,
// which on the gateway's hot path was about a tenth of its CPU.
type propagatingProvider struct {
	embedded.TracerProvider
}

func (p *propagatingProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return propagatingTracer{}
}

type propagatingTracer struct {
	embedded.Tracer
}

// Start returns a non-recording span whose context continues the parent's
// trace (or starts one) with a fresh span id. Only a remote parent from a
// W3C traceparent, or a local span, is continued; ids come from the
// runtime's per-thread ChaCha8 generator, like the SDK's own.
func (propagatingTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanContextFromContext(ctx)
	cfg := trace.SpanContextConfig{TraceFlags: trace.FlagsSampled}
	if parent.IsValid() {
		cfg.TraceID, cfg.TraceFlags, cfg.TraceState = parent.TraceID(), parent.TraceFlags(), parent.TraceState()
	} else {
		binary.BigEndian.PutUint64(cfg.TraceID[:8], rand.Uint64()) //nolint:gosec // G404: math/rand/v2's global generator is the runtime's OS-seeded ChaCha8; trace ids are identifiers, not secrets
		binary.BigEndian.PutUint64(cfg.TraceID[8:], nonZero())
	}
	binary.BigEndian.PutUint64(cfg.SpanID[:], nonZero())
	s := propagatingSpan{sc: trace.NewSpanContext(cfg)}
	return trace.ContextWithSpan(ctx, s), s
}

// nonZero is a random 64-bit value other than 0 (an all-zero id is invalid).
func nonZero() uint64 {
	for {
		if v := rand.Uint64(); v != 0 { //nolint:gosec // G404: as above
			return v
		}
	}
}

// propagatingSpan carries a span context and records nothing. It is a
// value type: storing it in a context costs the interface conversion only.
type propagatingSpan struct {
	embedded.Span
	sc trace.SpanContext
}

func (s propagatingSpan) SpanContext() trace.SpanContext        { return s.sc }
func (propagatingSpan) IsRecording() bool                       { return false }
func (propagatingSpan) End(...trace.SpanEndOption)              {}
func (propagatingSpan) AddEvent(string, ...trace.EventOption)   {}
func (propagatingSpan) AddLink(trace.Link)                      {}
func (propagatingSpan) RecordError(error, ...trace.EventOption) {}
func (propagatingSpan) SetStatus(codes.Code, string)            {}
func (propagatingSpan) SetName(string)                          {}
func (propagatingSpan) SetAttributes(...attribute.KeyValue)     {}
func (propagatingSpan) TracerProvider() trace.TracerProvider    { return &propagatingProvider{} }
