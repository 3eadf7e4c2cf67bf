package httpapi

import (
	"context"
	"io"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/shared/telemetry"
)

func withTelemetry(tel *telemetry.Telemetry) gwOption {
	return func(d *Deps) {
		d.Tracer = tel.Tracer("gateway")
		d.Propagator = tel.Propagator
	}
}

func upstreamParent(t *testing.T, g *gateway, hdr map[string]string) trace.SpanContext {
	t.Helper()
	g.drainSeen()
	if hdr == nil {
		hdr = map[string]string{}
	}
	hdr["Authorization"] = "Bearer " + g.token(t, nil)
	resp := g.get(t, "/api/v1/orders", hdr)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := <-g.seen
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(r.Header))
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		t.Fatalf("the upstream got no valid traceparent: %q", r.Header.Get("Traceparent"))
	}
	return sc
}

// TestTraceContextReachesTheUpstream: with spans exported, the gateway's
// server span is a root, its client span a child, and the upstream's parent
// is the client span; with nothing exported (no span recorded) the upstream
// still gets a traceparent, and a caller's trace (here passed straight to
// the handler, as from a trusted proxy) is continued.
func TestTraceContextReachesTheUpstream(t *testing.T) {
	t.Parallel()
	t.Run("exported spans are parent and child", func(t *testing.T) {
		t.Parallel()
		rec := tracetest.NewSpanRecorder()
		tel, err := telemetry.New(context.Background(), telemetry.Options{Service: "gateway", LogWriter: io.Discard,
			SpanProcessors: []sdktrace.SpanProcessor{rec}})
		if err != nil {
			t.Fatal(err)
		}
		g := newGateway(t, withTelemetry(tel))
		up := upstreamParent(t, g, nil)
		var server, client sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			switch s.SpanKind() {
			case trace.SpanKindServer:
				server = s
			case trace.SpanKindClient:
				client = s
			}
		}
		if server == nil || client == nil {
			t.Fatalf("spans %v", rec.Ended())
		}
		if server.Parent().IsValid() || server.Name() != "GET gateway" {
			t.Errorf("server span %q with parent %v", server.Name(), server.Parent())
		}
		if client.Parent().SpanID() != server.SpanContext().SpanID() || up.SpanID() != client.SpanContext().SpanID() ||
			up.TraceID() != server.SpanContext().TraceID() {
			t.Errorf("server %v, client %v (parent %v), upstream's parent %v", server.SpanContext(), client.SpanContext(), client.Parent(), up)
		}
		attrs := map[string]any{}
		for _, a := range server.Attributes() {
			attrs[string(a.Key)] = a.Value.AsInterface()
		}
		if attrs["http.route"] != "orders" || attrs["http.response.status_code"] != int64(200) {
			t.Errorf("server span attributes %v", attrs)
		}
	})
	t.Run("nothing exported, context still propagated", func(t *testing.T) {
		t.Parallel()
		tel, err := telemetry.New(context.Background(), telemetry.Options{Service: "gateway", LogWriter: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		g := newGateway(t, withTelemetry(tel))
		first, second := upstreamParent(t, g, nil), upstreamParent(t, g, nil)
		if first.TraceID() == second.TraceID() || !first.IsSampled() {
			t.Errorf("two requests, traces %v and %v", first, second)
		}
		const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
		up := upstreamParent(t, g, map[string]string{"Traceparent": "00-" + caller + "-00f067aa0ba902b7-01"})
		if up.TraceID().String() != caller || up.SpanID().String() == "00f067aa0ba902b7" {
			t.Errorf("caller's trace not continued: %v", up)
		}
	})
}
