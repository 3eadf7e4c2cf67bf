package secevent

import (
	"context"

	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/shared/natsx"
)

// Event is one security decision. It has no field for a token, password or
// secret on purpose: none may ever be recorded.
type Event struct {
	Type     Type
	Reason   Reason
	Severity Severity // zero: DefaultSeverity(Type)
	// Subject is the token's sub (the user id), when known.
	Subject   string
	ClientID  string
	ClientIP  string
	Route     string // the route template, never the raw path
	RequestID string
}

// Data is the event's CloudEvents data (CONTRACT §4).
type Data struct {
	Type      Type     `json:"type"`
	Reason    Reason   `json:"reason,omitempty"`
	Service   string   `json:"service"`
	Severity  Severity `json:"severity"`
	Time      string   `json:"time"`
	Subject   string   `json:"subject,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	ClientIP  string   `json:"client_ip,omitempty"`
	Route     string   `json:"route,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
	TraceID   string   `json:"trace_id,omitempty"`
	SpanID    string   `json:"span_id,omitempty"`
}

// Sink receives encoded events from the asynchronous publisher.
type Sink interface {
	Publish(ctx context.Context, subject string, data []byte, h nats.Header) error
}

// Options configure NewEmitter.
type Options struct {
	Service    string
	Registerer prometheus.Registerer
	// Sink, when nil, makes the emitter count and trace only.
	Sink   Sink
	Logger *slog.Logger
	// Buffer is how many events may wait for the sink (default 1024).
	Buffer int
	// PublishTimeout bounds one publish (default 2s).
	PublishTimeout time.Duration
	Propagator     propagation.TextMapPropagator
	Now            func() time.Time
}

// Emitter records security events.
type Emitter struct {
	o        Options
	log      *slog.Logger
	total    *prometheus.CounterVec
	dropped  prometheus.Counter
	queue    chan queued
	lastWarn atomic.Int64
}

type queued struct {
	subject string
	data    []byte
	header  nats.Header
}

// NewEmitter registers the emitter's metrics on o.Registerer.
func NewEmitter(o Options) (*Emitter, error) {
	if o.Service == "" || o.Registerer == nil {
		return nil, errors.New("secevent: service and registerer are required")
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Emitter{
		o:   o,
		log: log,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_security_events_total",
			Help: "Security events, by service, type and reason (CONTRACT §4).",
		}, []string{"service", "type", "reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "rampart_security_events_dropped_total",
			Help:        "Security events counted but not delivered to NATS (buffer full or publish failed).",
			ConstLabels: prometheus.Labels{"service": o.Service},
		}),
		queue: make(chan queued, o.Buffer),
	}
	for _, c := range []prometheus.Collector{e.total, e.dropped} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("secevent metrics: %w", err)
		}
	}
	// Initialise the dropped counter's series so dashboards and alerts see
	// a 0 rather than no data.
	e.dropped.Add(0)
	// Likewise every (type, reason) pair of the closed set: a counter
	// series born mid-range hides its first increment from increase() and
	// rate() (there is no earlier sample to compare with), so the first
	// refresh-token reuse would read 0 on a stat panel and never fire an
	// "any increase" alert. About 55 series per service, bounded by the
	// closed set; rate-limit reasons are limit names and are created on use.
	for t, rs := range reasons {
		for _, r := range rs {
			e.total.WithLabelValues(o.Service, string(t), string(r))
		}
	}
	return e, nil
}

// Expect creates the counter series of typ for each of reasons at 0, for
// reasons that are not in the closed set (rate-limit names come from
// configuration): see NewEmitter for why a series must exist before its
// first event. Reasons outside the allowed set are ignored.
func (e *Emitter) Expect(typ Type, reasons ...Reason) {
	for _, r := range reasons {
		if Allowed(typ, r) {
			e.total.WithLabelValues(e.o.Service, string(typ), string(r))
		}
	}
}

// MaxFieldBytes bounds each free-form field of an Event (Subject,
// ClientID, ClientIP, Route, RequestID). Some come from what a client sent;
// unbounded, one oversized value would push the event past NATS's 1 MiB
// message limit, so it would be dropped and never reach RAMPART_SECURITY or
// the audit trail (an attack that erases its own record), and would carry
// megabytes into every log line and span.
const MaxFieldBytes = 256

// bound cuts s to MaxFieldBytes, at a rune boundary.
func bound(s string) string {
	if len(s) <= MaxFieldBytes {
		return s
	}
	cut := MaxFieldBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Emit records ev: counter (with a trace-id exemplar), span event, and an
// enqueued CloudEvent. It never blocks: a full queue drops the message and
// counts it, the counter and span event are recorded regardless.
func (e *Emitter) Emit(ctx context.Context, ev Event) {
	ev.Subject, ev.ClientID, ev.ClientIP = bound(ev.Subject), bound(ev.ClientID), bound(ev.ClientIP)
	ev.Route, ev.RequestID = bound(ev.Route), bound(ev.RequestID)
	if !Allowed(ev.Type, ev.Reason) {
		e.log.WarnContext(ctx, "security event with a reason outside its set", slog.String("type", string(ev.Type)), slog.String("reason", string(ev.Reason)))
		ev.Reason = ReasonOther
	}
	if ev.Severity == "" {
		ev.Severity = DefaultSeverity(ev.Type)
	}
	sc := trace.SpanContextFromContext(ctx)

	c := e.total.WithLabelValues(e.o.Service, string(ev.Type), string(ev.Reason))
	if ea, ok := c.(prometheus.ExemplarAdder); ok && sc.IsValid() {
		ea.AddWithExemplar(1, prometheus.Labels{"trace_id": sc.TraceID().String()})
	} else {
		c.Inc()
	}

	span := trace.SpanFromContext(ctx)
	if ev.Type.Refusal() {
		// A refused request's span is an error span, whatever its HTTP
		// status. OpenTelemetry's HTTP conventions leave 4xx server spans
		// unset; we deliberately do not, so that "status = error" in the
		// trace backend finds every attack and denial (docs/operations.md).
		span.SetStatus(codes.Error, string(ev.Type)+"/"+string(ev.Reason))
	}
	span.AddEvent("security."+string(ev.Type), trace.WithAttributes(
		attribute.String("security.type", string(ev.Type)),
		attribute.String("security.reason", string(ev.Reason)),
		attribute.String("security.severity", string(ev.Severity)),
		attribute.String("enduser.id", ev.Subject),
		attribute.String("client_id", ev.ClientID),
		attribute.String("client.address", ev.ClientIP),
		attribute.String("http.route", ev.Route),
		attribute.String("request_id", ev.RequestID),
	))

	level := slog.LevelWarn
	if ev.Severity == SeverityInfo {
		level = slog.LevelInfo
	}
	e.log.Log(ctx, level, "security event",
		slog.String("event_type", string(ev.Type)), slog.String("reason", string(ev.Reason)),
		slog.String("severity", string(ev.Severity)), slog.String("subject", ev.Subject),
		slog.String("client_id", ev.ClientID), slog.String("client_ip", ev.ClientIP),
		slog.String("route", ev.Route), slog.String("request_id", ev.RequestID))

	if e.o.Sink == nil {
		return
	}
	data := Data{
		Type: ev.Type, Reason: ev.Reason, Service: e.o.Service, Severity: ev.Severity,
		Time: e.o.Now().UTC().Format(time.RFC3339Nano), Subject: ev.Subject, ClientID: ev.ClientID,
		ClientIP: ev.ClientIP, Route: ev.Route, RequestID: ev.RequestID,
	}
	if sc.IsValid() {
		data.TraceID, data.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	subject := natsx.SubjectSecurityPrefix + e.o.Service + "." + string(ev.Type)
	env, err := natsx.NewEvent(ctx, "rampart/"+e.o.Service, "rampart.security."+string(ev.Type), ev.Subject, data)
	if err != nil {
		e.drop(err)
		return
	}
	msg, err := natsx.Message(ctx, e.o.Propagator, subject, env)
	if err != nil {
		e.drop(err)
		return
	}
	select {
	case e.queue <- queued{subject: subject, data: msg.Data, header: msg.Header}:
	default:
		e.drop(errors.New("buffer full"))
	}
}

// drop counts an undelivered event and logs at most once a second, so a
// NATS outage does not flood the logs.
func (e *Emitter) drop(err error) {
	e.dropped.Inc()
	now := time.Now().Unix()
	if last := e.lastWarn.Load(); now > last && e.lastWarn.CompareAndSwap(last, now) {
		e.log.Warn("security event not delivered to NATS (counted)", slog.Any("error", err))
	}
}

// Run publishes queued events until ctx ends, then flushes what it can for
// up to one publish timeout.
func (e *Emitter) Run(ctx context.Context) {
	if e.o.Sink == nil {
		<-ctx.Done()
		return
	}
	for {
		select {
		case q := <-e.queue:
			e.publish(ctx, q)
		case <-ctx.Done():
			flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.PublishTimeout)
			defer cancel()
			for {
				select {
				case q := <-e.queue:
					if flush.Err() != nil {
						e.drop(flush.Err())
						continue
					}
					e.publish(flush, q)
				default:
					return
				}
			}
		}
	}
}

func (e *Emitter) publish(ctx context.Context, q queued) {
	pctx, cancel := context.WithTimeout(ctx, e.o.PublishTimeout)
	defer cancel()
	if err := e.o.Sink.Publish(pctx, q.subject, q.data, q.header); err != nil {
		e.drop(err)
	}
}

// NATSSink publishes to JetStream and waits for the stream's ack, so an
// event counted as delivered is stored in RAMPART_SECURITY.
type NATSSink struct{ js jetstream.JetStream }

// NewNATSSink returns a Sink on js.
func NewNATSSink(js jetstream.JetStream) *NATSSink { return &NATSSink{js: js} }

// Publish implements Sink.
func (s *NATSSink) Publish(ctx context.Context, subject string, data []byte, h nats.Header) error {
	msg := &nats.Msg{Subject: subject, Data: data, Header: h}
	_, err := s.js.PublishMsg(ctx, msg)
	return err
}

var _ Sink = (*NATSSink)(nil)
