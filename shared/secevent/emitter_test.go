package secevent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/rampart-go/rampart/shared/natsx"
)

// blockingSink never returns until its context ends: NATS hung.
type blockingSink struct{}

func (blockingSink) Publish(ctx context.Context, _ string, _ []byte, _ nats.Header) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestEmitNeverBlocksAndCountsDrops: with the sink stuck, every event is
// still counted, the overflow is counted as dropped, and Emit returns.
func TestEmitNeverBlocksAndCountsDrops(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e, err := NewEmitter(Options{Service: "svc", Registerer: reg, Sink: blockingSink{}, Buffer: 8, PublishTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	for range 1000 {
		e.Emit(context.Background(), Event{Type: TokenRejected, Reason: ReasonSignature})
	}
	if got := testutil.ToFloat64(e.total.WithLabelValues("svc", "token.rejected", "signature")); got != 1000 {
		t.Fatalf("counted %v events, want 1000", got)
	}
	// At most the buffer plus the one being published can be pending.
	if got := testutil.ToFloat64(e.dropped); got < 1000-9 {
		t.Fatalf("dropped %v, want at least %d", got, 1000-9)
	}
	cancel()
	<-done
}

// TestReasonsOutsideTheSetAreFolded keeps label cardinality bounded.
func TestReasonsOutsideTheSetAreFolded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e, err := NewEmitter(Options{Service: "svc", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	e.Emit(context.Background(), Event{Type: AccessDenied, Reason: "user-42-was-here"})
	e.Emit(context.Background(), Event{Type: RateLimitExceeded, Reason: "login"})
	if got := testutil.ToFloat64(e.total.WithLabelValues("svc", "access.denied", "other")); got != 1 {
		t.Errorf("unknown reason not folded into other: %v", got)
	}
	if got := testutil.ToFloat64(e.total.WithLabelValues("svc", "ratelimit.exceeded", "login")); got != 1 {
		t.Errorf("a limit name is a valid reason: %v", got)
	}
}

// TestEventReachesTheStreamWithSpanEventAndExemplar runs against an
// embedded nats-server (or RAMPART_TEST_NATS_URL's streams, which share the
// same names — so only the embedded server is used here).
func TestEventReachesTheStreamWithSpanEventAndExemplar(t *testing.T) {
	t.Parallel()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	nc, err := natsx.Connect(ctx, natsx.Options{URL: srv.ClientURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatalf("EnsureStreams is not idempotent: %v", err)
	}

	reg := prometheus.NewRegistry()
	e, err := NewEmitter(Options{Service: "order-service", Registerer: reg, Sink: NewNATSSink(js)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go e.Run(runCtx)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	sctx, span := tp.Tracer("test").Start(ctx, "request")
	e.Emit(sctx, Event{Type: AccessDenied, Reason: ReasonOwnership, Subject: "u1", Route: "/api/v1/orders/:id", RequestID: "req-12345678"})
	span.End()

	if evs := rec.Ended()[0].Events(); len(evs) != 1 || evs[0].Name != "security.access.denied" {
		t.Fatalf("span events %v", evs)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exemplar string
	for _, mf := range mfs {
		if mf.GetName() != "rampart_security_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] != "access.denied" || labels["reason"] != "ownership" {
				// Every other pair exists at 0 from the start, with no exemplar.
				if m.GetCounter().GetValue() != 0 || m.GetCounter().GetExemplar() != nil {
					t.Errorf("series %v = %v", labels, m.GetCounter().GetValue())
				}
				continue
			}
			for _, l := range m.GetCounter().GetExemplar().GetLabel() {
				if l.GetName() == "trace_id" {
					exemplar = l.GetValue()
				}
			}
		}
	}
	if exemplar != span.SpanContext().TraceID().String() {
		t.Errorf("exemplar trace id %q, want %s", exemplar, span.SpanContext().TraceID())
	}

	cons, err := js.OrderedConsumer(ctx, natsx.StreamSecurity, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"rampart.security.order-service.access.denied"},
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("event not on RAMPART_SECURITY: %v", err)
	}
	var ev natsx.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		t.Fatal(err)
	}
	var data Data
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	if ev.SpecVersion != "1.0" || data.Type != AccessDenied || data.Reason != ReasonOwnership || data.Service != "order-service" ||
		data.Subject != "u1" || data.TraceID != span.SpanContext().TraceID().String() || data.Severity != SeverityMedium {
		t.Errorf("event %+v data %+v", ev, data)
	}
}

// TestOversizedFieldsAreBoundedNotDropped: a field a client can influence
// (a client_id from a form, a subject from a token) must not be able to
// push the event past NATS's 1 MiB message limit — the event would be
// counted as dropped and never reach RAMPART_SECURITY or the audit trail,
// so an attacker could attack unrecorded — nor carry megabytes into logs
// and spans. Each field is cut to MaxFieldBytes.
func TestOversizedFieldsAreBoundedNotDropped(t *testing.T) {
	t.Parallel()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	nc, err := natsx.Connect(ctx, natsx.Options{URL: srv.ClientURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	e, err := NewEmitter(Options{Service: "auth-service", Registerer: prometheus.NewRegistry(), Sink: NewNATSSink(js)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go e.Run(runCtx)

	huge := strings.Repeat("A", 2<<20)
	e.Emit(ctx, Event{Type: ClientFailed, Reason: ReasonUnknownClient, ClientID: huge, Subject: huge, ClientIP: huge, Route: huge, RequestID: huge})

	cons, err := js.OrderedConsumer(ctx, natsx.StreamSecurity, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"rampart.security.auth-service.auth.client.failed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("the event never reached RAMPART_SECURITY (dropped %v): %v", testutil.ToFloat64(e.dropped), err)
	}
	var ev natsx.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		t.Fatal(err)
	}
	var data Data
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]string{"client_id": data.ClientID, "subject": data.Subject, "client_ip": data.ClientIP, "route": data.Route, "request_id": data.RequestID, "envelope subject": ev.Subject} {
		if len(f) == 0 || len(f) > MaxFieldBytes {
			t.Errorf("%s is %d bytes, want 1 to %d", name, len(f), MaxFieldBytes)
		}
	}
}
