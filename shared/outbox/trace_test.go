package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/natsx"
)

// TestRelayContinuesTheProducersTrace: an event written inside a request
// carries the request's W3C traceparent in its row (the CloudEvents
// traceparent of the payload), and the relay publishes it in that context,
// whatever context the relay itself runs in. The publish span is a child
// of the request span and a durable consumer's span a child of the publish
// span: one trace from the request to its asynchronous effects.
func TestRelayContinuesTheProducersTrace(t *testing.T) {
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nc, err := natsx.Connect(ctx, natsx.Options{URL: srv.ClientURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.TraceContext{}
	tracer := tp.Tracer("test")
	db := openDB(t, "sqlite://"+t.TempDir()+"/outbox.db")
	subject := natsx.SubjectEventsPrefix + "widget.created"

	// The consumer records the span context its handler runs in.
	handled := make(chan trace.SpanContext, 1)
	cons, err := consumer.New(ctx, consumer.Options{
		JS: js, Name: "trace-test", Subjects: []string{subject},
		Handle: func(ctx context.Context, _ natsx.Event) error {
			handled <- trace.SpanContextFromContext(ctx)
			return nil
		},
		TracerProvider: tp, Propagator: prop, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	go cons.Run(ctx)

	// The request: a change and its event committed together.
	reqCtx, reqSpan := tracer.Start(ctx, "POST /widgets", trace.WithSpanKind(trace.SpanKindServer))
	ev, err := natsx.NewEvent(reqCtx, "test", "widget.created", "w1", map[string]string{"id": "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := dbx.InTx(reqCtx, db, func(tx *gorm.DB) error {
		if err := tx.Table("widgets").Create(&widget{ID: "w1"}).Error; err != nil {
			return err
		}
		return Add(tx, subject, ev)
	}); err != nil {
		t.Fatal(err)
	}
	reqSpan.End()
	want := reqSpan.SpanContext()

	var row Row
	if err := db.Where("id = ?", ev.ID).Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	if tp := natsx.TraceParent(want); ev.TraceParent != tp {
		t.Fatalf("event traceparent %q, want the request's %q (row: %s)", ev.TraceParent, tp, row.Payload)
	}

	// The relay runs later, in a context of its own: another trace.
	relayCtx, relaySpan := tracer.Start(context.Background(), "outbox pass")
	relay, err := NewRelay(Options{
		DB: db, Publisher: natsx.NewPublisher(js, tp, prop), Registerer: prometheus.NewRegistry(), Propagator: prop,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := relay.Flush(relayCtx); err != nil || n != 1 {
		t.Fatalf("flush: n=%d err=%v", n, err)
	}
	relaySpan.End()

	var got trace.SpanContext
	select {
	case got = <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never received the event")
	}
	if got.TraceID() != want.TraceID() {
		t.Fatalf("consumer span in trace %s, want the request's %s", got.TraceID(), want.TraceID())
	}

	// Wait for the consumer span to end, then check the chain of parents:
	// request → publish (producer) → process (consumer).
	var publish, process sdktrace.ReadOnlySpan
	deadline := time.Now().Add(5 * time.Second)
	for process == nil && time.Now().Before(deadline) {
		for _, s := range spans.Ended() {
			switch s.SpanKind() {
			case trace.SpanKindProducer:
				publish = s
			case trace.SpanKindConsumer:
				process = s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if publish == nil || process == nil {
		t.Fatalf("spans: publish=%v process=%v", publish != nil, process != nil)
	}
	if publish.Parent().SpanID() != want.SpanID() || publish.SpanContext().TraceID() != want.TraceID() {
		t.Errorf("publish span's parent %s/%s, want the request span %s/%s",
			publish.Parent().TraceID(), publish.Parent().SpanID(), want.TraceID(), want.SpanID())
	}
	if publish.Parent().SpanID() == relaySpan.SpanContext().SpanID() {
		t.Error("the relay published in its own context instead of the request's")
	}
	if process.Parent().SpanID() != publish.SpanContext().SpanID() || process.SpanContext().SpanID() != got.SpanID() {
		t.Errorf("consumer span %s has parent %s, want a child of the publish span %s",
			process.SpanContext().SpanID(), process.Parent().SpanID(), publish.SpanContext().SpanID())
	}
}
