package natsx

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/rampart-go/rampart/shared/natsx"

// Publisher publishes envelopes to JetStream, traced.
type Publisher struct {
	js     jetstream.JetStream
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// NewPublisher returns a Publisher.
func NewPublisher(js jetstream.JetStream, tp trace.TracerProvider, prop propagation.TextMapPropagator) *Publisher {
	return &Publisher{js: js, tracer: tp.Tracer(tracerName), prop: prop}
}

// Publish sends ev on subject and waits for the stream's acknowledgement.
// Nats-Msg-Id is the event id, so a retry within the stream's duplicate
// window is stored once.
func (p *Publisher) Publish(ctx context.Context, subject string, ev Event) error {
	ctx, span := p.tracer.Start(ctx, "publish "+subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", ev.ID),
		))
	defer span.End()
	msg, err := Message(ctx, p.prop, subject, ev)
	if err != nil {
		span.SetStatus(codes.Error, "encode")
		return err
	}
	if _, err := p.js.PublishMsg(ctx, msg); err != nil {
		span.SetStatus(codes.Error, "publish")
		span.RecordError(err)
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// Message builds the NATS message for ev: JSON body, CloudEvents content
// type, Nats-Msg-Id for de-duplication and ctx's trace context. If ev has no
// traceparent yet it takes ctx's (the producer span's).
func Message(ctx context.Context, prop propagation.TextMapPropagator, subject string, ev Event) (*nats.Msg, error) {
	if ev.TraceParent == "" {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			ev.TraceParent = TraceParent(sc)
		}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set("Content-Type", ContentType)
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	Inject(ctx, prop, msg.Header)
	return msg, nil
}

// StartConsumeSpan starts the consumer span of a received message, as a
// child of the producer's span found in h. The returned context also
// carries subject (ConsumedSubject).
func StartConsumeSpan(ctx context.Context, tp trace.TracerProvider, prop propagation.TextMapPropagator, subject string, h nats.Header) (context.Context, trace.Span) {
	ctx = context.WithValue(Extract(ctx, prop, h), consumedSubjectKey{}, subject)
	return tp.Tracer(tracerName).Start(ctx, "process "+subject, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", h.Get(jetstream.MsgIDHeader)),
		))
}

type consumedSubjectKey struct{}

// ConsumedSubject returns the subject the message being handled in ctx was
// published on (set by StartConsumeSpan). Unlike anything in the message
// body, the subject is vouched for by the server's publish permissions:
// on rampart.security.<service>.> only that service may publish.
func ConsumedSubject(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(consumedSubjectKey{}).(string)
	return s, ok && s != ""
}
