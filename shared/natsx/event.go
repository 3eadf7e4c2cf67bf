package natsx

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
)

// Event is a CloudEvents 1.0 envelope in structured JSON mode, with the
// distributed-tracing extension's traceparent.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	TraceParent     string          `json:"traceparent,omitempty"`
}

// ContentType is the structured-mode media type, set as the NATS
// Content-Type header.
const ContentType = "application/cloudevents+json"

// NewEvent wraps data in an envelope with a fresh UUIDv7 id (time-ordered,
// so ids sort roughly by creation) and ctx's trace context.
func NewEvent(ctx context.Context, source, typ, subject string, data any) (Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("event id: %w", err)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s event: %w", typ, err)
	}
	ev := Event{
		SpecVersion: "1.0", ID: id.String(), Source: source, Type: typ,
		Time: time.Now().UTC(), Subject: subject, DataContentType: "application/json", Data: raw,
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		ev.TraceParent = TraceParent(sc)
	}
	return ev, nil
}

// TraceParent formats sc as a W3C traceparent value.
func TraceParent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
}
