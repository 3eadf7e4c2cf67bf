package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

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
