// Package consumer runs a durable, idempotent JetStream consumer of domain
// events: the receiving half of the outbox.
//
// Delivery is at least once: a message is acknowledged only after its
// handler returned nil, so a crash, a timeout or a failed transaction makes
// JetStream redeliver it. Handlers make that safe by calling Once inside the
// transaction that applies the event: the event id is recorded in the
// service's processed_events table together with the effect, so a
// redelivered or replayed event finds its id there and changes nothing.
//
// Every service that consumes creates this table in its own migrations:
//
//	CREATE TABLE processed_events (
//	    consumer     VARCHAR(100) NOT NULL,
//	    event_id     VARCHAR(36)  NOT NULL,
//	    processed_at TIMESTAMP    NOT NULL,
//	    PRIMARY KEY (consumer, event_id)
//	);
//	CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
//
// A row is only needed while the stream may deliver its event again: a
// redelivery, or a replay by a new durable, reaches back at most
// natsx.EventsMaxAge (the stream's MaxAge). A Pruner deletes rows older than
// DefaultRetention, a day past that, in bounded batches; the index on
// processed_at serves its predicate. A service that calls Once runs one
// Pruner (its Run) next to its consumers.
package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/natsx"
)

// Handler applies one event. Returning nil acknowledges it; an error wrapped
// with Permanent terminates it (it will never succeed, so retrying only
// blocks the consumer); any other error redelivers it after a back-off.
type Handler func(ctx context.Context, ev natsx.Event) error

// Options configure New.
type Options struct {
	// JS is the service's JetStream context.
	JS jetstream.JetStream
	// Stream holds the events; default RAMPART_EVENTS.
	Stream string
	// Name is the durable consumer's name, unique per service and purpose
	// ("order-service-user-deleted"). JetStream keeps its position, so a
	// service that was down catches up from where it stopped.
	Name string
	// Subjects filter the stream (required).
	Subjects []string
	// Handle applies an event (required).
	Handle Handler
	// MaxDeliver bounds redeliveries of a failing event; default 20. The
	// back-off grows from one second to a minute, so the default gives up
	// after about a quarter of an hour; that last failure is counted as
	// outcome "exhausted" and logged as an error (the event is lost).
	MaxDeliver int
	// AckWait is how long a handler may take before JetStream redelivers;
	// default 30s.
	AckWait time.Duration

	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Registerer receives rampart_consumer_events_total; optional.
	Registerer prometheus.Registerer
}

// Consumer is a running durable consumer.
type Consumer struct {
	o       Options
	cons    jetstream.Consumer
	ready   atomic.Bool
	handled *prometheus.CounterVec
}

// The outcomes counted in rampart_consumer_events_total.
const (
	outcomeOK        = "ok"
	outcomeRetry     = "retry"
	outcomeTerm      = "terminated"
	outcomeMalformed = "malformed"
	// outcomeExhausted: the last allowed delivery failed too; JetStream
	// will not deliver the event again, so it is lost unless an operator
	// acts (for user.deleted: an erasure not applied).
	outcomeExhausted = "exhausted"
)

// New creates (or updates) the durable consumer. It does not start
// consuming: call Run.
func New(ctx context.Context, o Options) (*Consumer, error) {
	if o.JS == nil || o.Name == "" || len(o.Subjects) == 0 || o.Handle == nil {
		return nil, errors.New("consumer: JS, Name, Subjects and Handle are required")
	}
	if o.Stream == "" {
		o.Stream = natsx.StreamEvents
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = 20
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider == nil {
		o.TracerProvider = noop.NewTracerProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	c := &Consumer{o: o, handled: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "rampart_consumer_events_total",
		Help:        "Domain events handled by a durable consumer, by outcome (ok, retry, terminated, malformed, exhausted: failed on its last allowed delivery and dropped).",
		ConstLabels: prometheus.Labels{"consumer": o.Name},
	}, []string{"outcome"})}
	if o.Registerer != nil {
		if err := o.Registerer.Register(c.handled); err != nil {
			return nil, fmt.Errorf("consumer %s: metrics: %w", o.Name, err)
		}
		// Exported at 0 from the start, so that increase() in the
		// RampartEventsAbandoned alert sees the first one.
		c.handled.WithLabelValues(outcomeExhausted)
	}
	cfg := jetstream.ConsumerConfig{
		Durable: o.Name, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait: o.AckWait, MaxDeliver: o.MaxDeliver, MaxAckPending: 256,
	}
	if len(o.Subjects) == 1 {
		cfg.FilterSubject = o.Subjects[0]
	} else {
		cfg.FilterSubjects = o.Subjects
	}
	cons, err := o.JS.CreateOrUpdateConsumer(ctx, o.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", o.Name, err)
	}
	c.cons = cons
	return c, nil
}

// Ready reports whether Run is consuming.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Run consumes until ctx ends. The nats.go client re-subscribes after
// reconnects on its own; Run only has to stop cleanly.
func (c *Consumer) Run(ctx context.Context) {
	cc, err := c.cons.Consume(func(msg jetstream.Msg) { c.handle(ctx, msg) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.o.Logger.Warn("consumer error", slog.String("consumer", c.o.Name), slog.Any("error", err))
		}))
	if err != nil {
		c.o.Logger.Error("consumer did not start", slog.String("consumer", c.o.Name), slog.Any("error", err))
		return
	}
	c.ready.Store(true)
	<-ctx.Done()
	c.ready.Store(false)
	cc.Drain()
	<-cc.Closed()
}

func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg) {
	ctx, span := natsx.StartConsumeSpan(ctx, c.o.TracerProvider, c.o.Propagator, msg.Subject(), msg.Headers())
	defer span.End()
	log := c.o.Logger.With(slog.String("consumer", c.o.Name), slog.String("subject", msg.Subject()))

	var ev natsx.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || !recordableID(ev.ID) || ev.Type == "" {
		// A message no handler can read will never become readable, nor
		// one whose id Once cannot record: on PostgreSQL every delivery
		// would fail alike until the retries ran out.
		span.SetStatus(codes.Error, "malformed")
		log.Error("malformed event terminated", slog.Any("error", err))
		c.handled.WithLabelValues(outcomeMalformed).Inc()
		_ = msg.Term()
		return
	}
	log = log.With(slog.String("event_id", ev.ID))
	err := c.o.Handle(ctx, ev)
	switch {
	case err == nil:
		if err := msg.Ack(); err != nil {
			// The effect is committed and recorded by Once: a redelivery
			// is harmless.
			log.Warn("ack failed", slog.Any("error", err))
		}
		c.handled.WithLabelValues(outcomeOK).Inc()
	case IsPermanent(err):
		span.SetStatus(codes.Error, "terminated")
		span.RecordError(err)
		log.Error("event terminated", slog.Any("error", err))
		c.handled.WithLabelValues(outcomeTerm).Inc()
		_ = msg.Term()
	case lastDelivery(msg, c.o.MaxDeliver):
		// JetStream stops here (MaxDeliver): logging "will retry" and
		// counting a retry would hide that the event is now lost. Say so
		// where an alert can see it, and terminate it explicitly.
		span.SetStatus(codes.Error, "exhausted")
		span.RecordError(err)
		if md, merr := msg.Metadata(); merr == nil {
			// Where an operator finds the event to publish it again
			// (docs/operations.md, RampartEventsAbandoned).
			log = log.With(slog.Uint64("stream_seq", md.Sequence.Stream))
		}
		log.Error("event abandoned: every delivery failed", slog.Any("error", err), slog.Int("deliveries", c.o.MaxDeliver))
		c.handled.WithLabelValues(outcomeExhausted).Inc()
		_ = msg.Term()
	default:
		span.SetStatus(codes.Error, "retry")
		span.RecordError(err)
		delay := backoff(msg)
		log.Warn("event failed, will retry", slog.Any("error", err), slog.Duration("delay", delay))
		c.handled.WithLabelValues(outcomeRetry).Inc()
		_ = msg.NakWithDelay(delay)
	}
}

// recordableID reports whether id is what natsx.NewEvent makes, a UUID in
// canonical form: the only ids processed_events.event_id (VARCHAR(36))
// holds on every database, and the only ones our publishers send.
func recordableID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// lastDelivery reports whether msg is on its last delivery: JetStream will
// not redeliver it after this one. max < 1 is unlimited.
func lastDelivery(msg jetstream.Msg, max int) bool {
	md, err := msg.Metadata()
	return err == nil && max > 0 && md.NumDelivered >= uint64(max)
}

// backoff doubles from one second per delivery, capped at a minute.
func backoff(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	if n > 7 {
		return time.Minute
	}
	return min(time.Second<<(n-1), time.Minute)
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one no retry can fix (a malformed payload, an
// event this consumer cannot apply): the message is terminated, not
// redelivered.
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Decode unmarshals ev's data into v, strictly enough for our own events;
// a failure is Permanent.
func Decode(ev natsx.Event, v any) error {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return Permanent(fmt.Errorf("%s %s: decode data: %w", ev.Type, ev.ID, err))
	}
	return nil
}

type processed struct {
	Consumer    string    `gorm:"column:consumer;primaryKey"`
	EventID     string    `gorm:"column:event_id;primaryKey"`
	ProcessedAt time.Time `gorm:"column:processed_at"`
}

func (processed) TableName() string { return "processed_events" }

// Once records, inside tx, that consumer has processed eventID. It returns
// false when the event was already recorded: the caller must then skip the
// effect (and commit or roll back; both are harmless). Call it first in the
// transaction that applies the event, so the record and the effect commit
// together or not at all.
func Once(tx *gorm.DB, consumer, eventID string) (bool, error) {
	res := tx.Clauses(clause.OnConflict{DoNothing: true}).
		Create(&processed{Consumer: consumer, EventID: eventID, ProcessedAt: time.Now().UTC()})
	if res.Error != nil {
		return false, fmt.Errorf("record event %s: %w", eventID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// DefaultRetention is how long a processed_events row is kept: a day
// longer than RAMPART_EVENTS keeps the event, so no redelivery or replay
// can find its id gone and apply it twice.
const DefaultRetention = natsx.EventsMaxAge + 24*time.Hour

// DefaultPruneInterval is how often a Pruner runs by default.
const DefaultPruneInterval = 10 * time.Minute

// PrunerOptions configure NewPruner.
type PrunerOptions struct {
	// DB holds the service's processed_events table (required).
	DB *gorm.DB
	// Retention is how long a row is kept (default DefaultRetention). It
	// must exceed natsx.EventsMaxAge: a shorter one would forget events
	// the stream can still deliver.
	Retention time.Duration
	// Interval is how often Run prunes (default DefaultPruneInterval).
	Interval time.Duration
	Logger   *slog.Logger
	// Registerer receives rampart_consumer_processed_events_pruned_total;
	// optional.
	Registerer prometheus.Registerer
}

// Pruner deletes the processed_events rows no redelivery can need any
// more. One per service database, shared by all its consumers.
type Pruner struct {
	db        *gorm.DB
	retention time.Duration
	every     time.Duration
	log       *slog.Logger
	pruned    prometheus.Counter
}

// NewPruner returns a Pruner. It returns an error when DB is missing, when
// Retention does not exceed natsx.EventsMaxAge, or when its metric is
// already registered.
func NewPruner(o PrunerOptions) (*Pruner, error) {
	if o.DB == nil {
		return nil, errors.New("consumer pruner: DB is required")
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.Retention <= natsx.EventsMaxAge {
		return nil, fmt.Errorf("consumer pruner: retention %v must exceed the events stream's %v", o.Retention, natsx.EventsMaxAge)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultPruneInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pruner{db: o.DB, retention: o.Retention, every: o.Interval, log: o.Logger,
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_consumer_processed_events_pruned_total",
			Help: "processed_events rows deleted by the retention pass (older than the events stream keeps an event).",
		})}
	if o.Registerer != nil {
		if err := o.Registerer.Register(p.pruned); err != nil {
			return nil, fmt.Errorf("consumer pruner: metrics: %w", err)
		}
	}
	return p, nil
}

// Prune deletes the rows processed more than Retention ago, at most
// dbx.DefaultDeleteBatch per statement, and returns how many it deleted
// (also on error: "prune processed events: …").
func (p *Pruner) Prune(ctx context.Context) (int64, error) {
	n, err := dbx.DeleteBatched(ctx, p.db, dbx.Batch{
		Model: &processed{}, Key: "consumer, event_id",
		Where: "processed_at < ?", Args: []any{time.Now().UTC().Add(-p.retention)},
	})
	p.pruned.Add(float64(n))
	if err != nil {
		return n, fmt.Errorf("prune processed events: %w", err)
	}
	return n, nil
}

// Run prunes at start and every Interval until ctx ends.
func (p *Pruner) Run(ctx context.Context) {
	dbx.RunRetention(ctx, p.every, p.log, "processed_events", p.Prune)
}
