// Package outbox is the transactional outbox: a domain event is written to
// the service's own database in the same transaction as the change it
// describes, and a relay publishes it to JetStream afterwards. A crash
// between the two leaves the row behind, and the relay publishes it on the
// next pass, so an event is never lost and never announces a change that
// was rolled back. Delivery is at least once; Nats-Msg-Id (the event id)
// lets the stream drop duplicates within its window and consumers must be
// idempotent beyond it.
//
// The relay publishes a batch of rows and then marks them published with
// one UPDATE. A relay that dies in between leaves rows that were published
// but look pending: the next relay publishes them again, and the stream
// drops the copies (Nats-Msg-Id, within its two-minute duplicate window).
// When a publish fails, the rows published before it are marked first.
//
// Published rows are kept for Options.Retention (DefaultRetention, a day:
// enough to answer "did this event leave, and when?") and then deleted by
// the relay's retention pass, in bounded batches (dbx.DeleteBatched), so
// the table does not grow forever. A row not yet published is never
// deleted, whatever its age: it is an event the stream is still owed.
//
// The trace goes with the event: natsx.NewEvent stores the request's W3C
// traceparent in the envelope (so in the row's payload; no column of its
// own), and the relay publishes in that span context whenever it runs, so
// the publish span and every consumer's span join the request's trace.
//
// Every service that uses it creates this table in its own migrations:
//
//	CREATE TABLE outbox (
//	    id           VARCHAR(36)  PRIMARY KEY,   -- the CloudEvents id (UUIDv7)
//	    subject      VARCHAR(200) NOT NULL,
//	    payload      TEXT         NOT NULL,      -- the CloudEvents JSON
//	    created_at   TIMESTAMP    NOT NULL,
//	    published_at TIMESTAMP    NULL,
//	    attempts     INTEGER      NOT NULL DEFAULT 0
//	);
//	CREATE INDEX outbox_pending ON outbox (published_at, created_at);
//
// The index serves both the relay's read (published_at IS NULL, in
// created_at order) and the retention pass (published_at < cutoff).
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/natsx"
)

// DefaultRetention is how long a published row is kept by default.
const DefaultRetention = 24 * time.Hour

// DefaultPruneInterval is how often Run deletes expired rows by default.
const DefaultPruneInterval = 10 * time.Minute

// markTimeout bounds the UPDATE that records a batch as published. It runs
// even when the relay's context has just been cancelled (shutdown): the
// events are out, and recording it spares the next relay a re-publish.
const markTimeout = 5 * time.Second

// Row is one outbox entry.
type Row struct {
	ID          string `gorm:"primaryKey"`
	Subject     string
	Payload     string
	CreatedAt   time.Time
	PublishedAt *time.Time
	Attempts    int
}

// TableName is the table every service creates.
func (Row) TableName() string { return "outbox" }

// Add writes ev to the outbox inside tx: call it in the transaction that
// makes the change the event describes.
func Add(tx *gorm.DB, subject string, ev natsx.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("outbox: encode: %w", err)
	}
	return tx.Create(&Row{ID: ev.ID, Subject: subject, Payload: string(b), CreatedAt: time.Now().UTC()}).Error
}

// Publisher is what the relay publishes through (natsx.Publisher).
type Publisher interface {
	Publish(ctx context.Context, subject string, ev natsx.Event) error
}

// Relay publishes pending rows in creation order.
type Relay struct {
	db         *gorm.DB
	pub        Publisher
	log        *slog.Logger
	prop       propagation.TextMapPropagator
	wake       chan struct{}
	every      time.Duration
	batch      int
	retention  time.Duration
	pruneEvery time.Duration
	pending    prometheus.Gauge
	oldest     prometheus.Gauge
	failed     prometheus.Counter
	pruned     prometheus.Counter
}

// Options configure NewRelay.
type Options struct {
	DB         *gorm.DB
	Publisher  Publisher
	Logger     *slog.Logger
	Propagator propagation.TextMapPropagator
	Registerer prometheus.Registerer
	// Interval between passes when nothing wakes the relay (default 1s).
	Interval time.Duration
	// Retention is how long a published row is kept before the retention
	// pass deletes it (default DefaultRetention).
	Retention time.Duration
	// PruneInterval is how often Run runs the retention pass (default
	// DefaultPruneInterval).
	PruneInterval time.Duration
}

// NewRelay returns a relay and registers its metrics:
// rampart_outbox_pending and rampart_outbox_oldest_age_seconds (the backlog
// alert reads the latter), rampart_outbox_publish_failures_total and
// rampart_outbox_pruned_total. It returns an error when a required option
// is missing, Retention is negative, or a metric is already registered.
func NewRelay(o Options) (*Relay, error) {
	if o.DB == nil || o.Publisher == nil || o.Registerer == nil {
		return nil, errors.New("outbox: DB, Publisher and Registerer are required")
	}
	if o.Retention < 0 {
		return nil, errors.New("outbox: Retention must not be negative")
	}
	r := &Relay{
		db: o.DB, pub: o.Publisher, log: o.Logger, prop: o.Propagator,
		wake: make(chan struct{}, 1), every: o.Interval, batch: 100,
		retention: o.Retention, pruneEvery: o.PruneInterval,
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_outbox_pending", Help: "Outbox events not yet published.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rampart_outbox_oldest_age_seconds", Help: "Age of the oldest unpublished outbox event (0 when empty).",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_outbox_publish_failures_total", Help: "Outbox publish attempts that failed (retried).",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_outbox_pruned_total", Help: "Published outbox events deleted by the retention pass.",
		}),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.prop == nil {
		r.prop = propagation.TraceContext{}
	}
	if r.every <= 0 {
		r.every = time.Second
	}
	if r.retention == 0 {
		r.retention = DefaultRetention
	}
	if r.pruneEvery <= 0 {
		r.pruneEvery = DefaultPruneInterval
	}
	for _, c := range []prometheus.Collector{r.pending, r.oldest, r.failed, r.pruned} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("outbox metrics: %w", err)
		}
	}
	return r, nil
}

// Notify wakes the relay after a commit, so events leave within
// milliseconds instead of at the next tick. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends, and runs the retention pass at start and
// every PruneInterval. The pass has its own goroutine, so a long one (a
// large backlog of old rows) does not stop the publishing loop; on SQLite
// the two share the write lock one short statement at a time.
func (r *Relay) Run(ctx context.Context) {
	pruning := make(chan struct{})
	go func() {
		defer close(pruning)
		r.runPruner(ctx)
	}()
	defer func() { <-pruning }()

	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		if _, err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox pass failed", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		}
	}
}

// Flush publishes every pending row it can, oldest first, and returns how
// many it published and marked. It stops at the first failure so order is
// kept, after marking the rows of the batch published before it; the
// error is the publish's, or the mark's ("outbox: mark published: …").
func (r *Relay) Flush(ctx context.Context) (int, error) {
	n := 0
	defer r.observe(ctx)
	for {
		var rows []Row
		if err := r.db.WithContext(ctx).Where("published_at IS NULL").
			Order("created_at, id").Limit(r.batch).Find(&rows).Error; err != nil {
			return n, fmt.Errorf("outbox: read: %w", err)
		}
		if len(rows) == 0 {
			return n, nil
		}
		sent := make([]string, 0, len(rows))
		var failed error
		for _, row := range rows {
			if failed = r.publish(ctx, row); failed != nil {
				r.failed.Inc()
				r.db.WithContext(ctx).Model(&Row{}).Where("id = ?", row.ID).
					UpdateColumn("attempts", gorm.Expr("attempts + 1"))
				break
			}
			sent = append(sent, row.ID)
		}
		if err := r.mark(ctx, sent); err != nil {
			return n, errors.Join(failed, err)
		}
		n += len(sent)
		if failed != nil {
			return n, failed
		}
	}
}

// mark records ids as published, with one UPDATE for the batch. Until it
// commits they look pending, and a relay that dies first publishes them
// again (the stream drops the copies by Nats-Msg-Id).
func (r *Relay) mark(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
	defer cancel()
	if err := r.db.WithContext(ctx).Model(&Row{}).Where("id IN ?", ids).
		Update("published_at", time.Now().UTC()).Error; err != nil {
		return fmt.Errorf("outbox: mark published: %w", err)
	}
	return nil
}

// Prune deletes the rows published more than Retention ago, at most
// dbx.DefaultDeleteBatch per statement, and returns how many it deleted
// (also on error: "outbox: prune: …"). A pending row is never deleted,
// however old. Run calls it every PruneInterval.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	n, err := dbx.DeleteBatched(ctx, r.db, dbx.Batch{
		Model: &Row{}, Key: "id",
		// IS NOT NULL is implied by the comparison (NULL < x is not true);
		// spelled out because deleting a pending row would lose an event.
		Where: "published_at IS NOT NULL AND published_at < ?",
		Args:  []any{time.Now().UTC().Add(-r.retention)},
	})
	r.pruned.Add(float64(n))
	if err != nil {
		return n, fmt.Errorf("outbox: prune: %w", err)
	}
	return n, nil
}

func (r *Relay) runPruner(ctx context.Context) {
	dbx.RunRetention(ctx, r.pruneEvery, r.log, "outbox", r.Prune)
}

func (r *Relay) publish(ctx context.Context, row Row) error {
	var ev natsx.Event
	if err := json.Unmarshal([]byte(row.Payload), &ev); err != nil {
		return fmt.Errorf("outbox: row %s: %w", row.ID, err)
	}
	// Continue the trace of the request that wrote the event.
	pctx := ctx
	if ev.TraceParent != "" {
		pctx = r.prop.Extract(ctx, propagation.MapCarrier{"traceparent": ev.TraceParent})
		if !trace.SpanContextFromContext(pctx).IsValid() {
			pctx = ctx
		}
	}
	return r.pub.Publish(pctx, row.Subject, ev)
}

func (r *Relay) observe(ctx context.Context) {
	var n int64
	row := r.db.WithContext(ctx).Model(&Row{}).Where("published_at IS NULL").
		Select("COUNT(*) AS n, MIN(created_at) AS oldest").Row()
	if row == nil {
		return
	}
	var oldest sqlTime
	if err := row.Scan(&n, &oldest); err != nil {
		return
	}
	r.pending.Set(float64(n))
	if oldest.Valid {
		r.oldest.Set(time.Since(oldest.Time).Seconds())
	} else {
		r.oldest.Set(0)
	}
}

// sqlTime scans a nullable timestamp from an aggregate: PostgreSQL returns
// a time, SQLite returns the stored text.
type sqlTime struct {
	Time  time.Time
	Valid bool
}

func (t *sqlTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		t.Valid = false
		return nil
	case time.Time:
		t.Time, t.Valid = x, true
		return nil
	case []byte:
		return t.parse(string(x))
	case string:
		return t.parse(x)
	}
	return fmt.Errorf("outbox: cannot scan %T as time", v)
}

func (t *sqlTime) parse(s string) error {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999"} {
		if p, err := time.Parse(layout, s); err == nil {
			t.Time, t.Valid = p, true
			return nil
		}
	}
	return fmt.Errorf("outbox: unparsable time %q", s)
}
