package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestLogsCarryTraceIDs: a log line written inside a span names the span's
// trace and span ids, so logs join traces.
func TestLogsCarryTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	rec := tracetest.NewSpanRecorder()
	tel, err := New(context.Background(), Options{Service: "svc", LogWriter: &buf, SpanProcessors: []sdktrace.SpanProcessor{rec}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tel.Tracer("test").Start(context.Background(), "op")
	tel.Logger.InfoContext(ctx, "inside")
	span.End()
	tel.Logger.Info("outside")
	if len(rec.Ended()) != 1 {
		t.Fatalf("the span was not recorded")
	}

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines, got %q", buf.String())
	}
	var in, out map[string]any
	if err := json.Unmarshal(lines[0], &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lines[1], &out); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || in["service"] != "svc" {
		t.Errorf("log inside a span: %v", in)
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("log outside a span has a trace id: %v", out)
	}
}

// TestOptionsAreValidated: a bad level or OTLP endpoint fails at start, not
// silently later.
func TestOptionsAreValidated(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"an unknown log level":            {Service: "svc", LogLevel: "loud"},
		"an OTLP endpoint without scheme": {Service: "svc", OTLPEndpoint: "collector:4318"},
		"no service name":                 {},
	} {
		if _, err := New(context.Background(), o); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
}

// TestWithoutExporterTraceContextStillPropagates: with no OTLP endpoint and
// no span processor, spans are not recorded, yet each one has a valid
// context, children and remote children stay in their parent's trace, the
// sampled flag is kept, and the propagator writes a traceparent.
func TestWithoutExporterTraceContextStillPropagates(t *testing.T) {
	t.Parallel()
	tel, err := New(context.Background(), Options{Service: "svc", LogWriter: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	tr := tel.Tracer("test")
	ctx, root := tr.Start(context.Background(), "root")
	rc := root.SpanContext()
	if root.IsRecording() || !rc.IsValid() || !rc.IsSampled() {
		t.Fatalf("root span: recording %v, context %+v", root.IsRecording(), rc)
	}
	_, child := tr.Start(ctx, "child")
	if cc := child.SpanContext(); cc.TraceID() != rc.TraceID() || cc.SpanID() == rc.SpanID() || !cc.IsValid() {
		t.Errorf("child %v of root %v", cc, rc)
	}

	// A remote parent that was not sampled stays unsampled downstream.
	h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}
	rctx := tel.Propagator.Extract(context.Background(), propagation.HeaderCarrier(h))
	rctx, span := tr.Start(rctx, "server")
	sc := span.SpanContext()
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.IsSampled() || sc.SpanID().String() == "00f067aa0ba902b7" {
		t.Errorf("continued span %+v", sc)
	}
	out := http.Header{}
	tel.Propagator.Inject(rctx, propagation.HeaderCarrier(out))
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + sc.SpanID().String() + "-00"; out.Get("Traceparent") != want {
		t.Errorf("injected %q, want %q", out.Get("Traceparent"), want)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}
