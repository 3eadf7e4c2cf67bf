package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
)

// DefaultName is the durable consumer's name on RAMPART_SECURITY.
const DefaultName = "audit-trail"

// DefaultCheckpointInterval is how often Trail logs the chain's head.
const DefaultCheckpointInterval = 5 * time.Minute

// Options configure New.
type Options struct {
	JS jetstream.JetStream
	// DB holds the audit table, migrated (Migrate).
	DB *gorm.DB
	// Name is the durable consumer's name (default DefaultName). Two
	// processes with the same name share the work, and Append's lock keeps
	// their chain whole.
	Name string
	// CheckpointInterval is how often the head is logged when it moved
	// (default DefaultCheckpointInterval; negative: never).
	CheckpointInterval time.Duration
	// OnCheckpoint, when set, also receives every checkpoint: publish it
	// somewhere the database's writers cannot reach.
	OnCheckpoint func(context.Context, Head)

	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Registerer receives rampart_consumer_events_total{consumer=Name}.
	Registerer prometheus.Registerer
}

// Trail appends every event of RAMPART_SECURITY to the audit table.
type Trail struct {
	o    Options
	log  *slog.Logger
	cons *consumer.Consumer
}

// New creates (or updates) the durable consumer. Call Run to consume.
func New(ctx context.Context, o Options) (*Trail, error) {
	if o.JS == nil || o.DB == nil {
		return nil, errors.New("audit: JS and DB are required")
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Trail{o: o, log: o.Logger.With(slog.String("consumer", o.Name))}
	var err error
	t.cons, err = consumer.New(ctx, consumer.Options{
		JS: o.JS, Stream: natsx.StreamSecurity, Name: o.Name, Subjects: []string{natsx.SubjectSecurityPrefix + ">"},
		Handle: t.handle,
		// Never give up on an event: an audit trail with a hole is worse
		// than one that is late. A failing append (the database is down)
		// is retried with back-off until it succeeds.
		MaxDeliver: -1,
		Logger:     o.Logger, TracerProvider: o.TracerProvider, Propagator: o.Propagator, Registerer: o.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return t, nil
}

func (t *Trail) handle(ctx context.Context, ev natsx.Event) error {
	if err := claimsMatchSubject(ctx, ev); err != nil {
		return consumer.Permanent(err)
	}
	res, err := Append(ctx, t.o.DB, ev)
	switch {
	case errors.Is(err, ErrInvalid):
		return consumer.Permanent(err)
	case err != nil:
		return err
	case res.Conflict:
		t.log.WarnContext(ctx, "audit: event id reused with different content; the first is kept",
			slog.String("event_id", ev.ID), slog.Int64("seq", res.Entry.Seq))
	}
	return nil
}

// claimsMatchSubject refuses an event whose claimed service (data.service,
// or the envelope's source "rampart/<service>") is not the service in the
// subject it was published on. Each service may publish only on
// rampart.security.<itself>.> (deploy/stack NATSPublish), so the subject is
// the one authenticated fact about the sender; the body is the sender's
// say-so. Without this check a compromised gateway could put a login or a
// revocation "by auth-service" into the trail. The refused message stays in
// RAMPART_SECURITY, and the consumer logs its termination, as evidence.
func claimsMatchSubject(ctx context.Context, ev natsx.Event) error {
	subject, ok := natsx.ConsumedSubject(ctx)
	if !ok {
		return errors.New("audit: the event's subject is unknown, so is its sender")
	}
	rest, ok := strings.CutPrefix(subject, natsx.SubjectSecurityPrefix)
	sender, _, _ := strings.Cut(rest, ".")
	if !ok || sender == "" {
		return fmt.Errorf("audit: subject %q names no service", subject)
	}
	var d secevent.Data
	_ = json.Unmarshal(ev.Data, &d) // lenient, as fromPayload
	for _, claim := range []string{d.Service, strings.TrimPrefix(ev.Source, "rampart/")} {
		if claim != "" && claim != sender {
			return fmt.Errorf("audit: event %s published by %s claims to come from %q", ev.ID, sender, claim)
		}
	}
	return nil
}

// Ready reports whether Run is consuming.
func (t *Trail) Ready() bool { return t.cons.Ready() }

// Run consumes until ctx ends (or the consumer cannot start), logging a checkpoint of the head every
// CheckpointInterval when it moved, and once more at the end.
func (t *Trail) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { defer close(done); t.cons.Run(ctx) }()
	var last Head
	checkpoint := func(ctx context.Context) {
		h, err := CurrentHead(ctx, t.o.DB)
		if err != nil {
			t.log.WarnContext(ctx, "audit checkpoint", slog.Any("error", err))
			return
		}
		if h == last {
			return
		}
		last = h
		t.log.InfoContext(ctx, "audit checkpoint", slog.Int64("seq", h.Seq), slog.String("hash", h.Hash), slog.String("checkpoint", h.String()))
		if t.o.OnCheckpoint != nil {
			t.o.OnCheckpoint(ctx, h)
		}
	}
	if t.o.CheckpointInterval > 0 {
		tick := time.NewTicker(t.o.CheckpointInterval)
		defer tick.Stop()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-done: // the consumer could not start
				break loop
			case <-tick.C:
				checkpoint(ctx)
			}
		}
	}
	<-done
	if t.o.CheckpointInterval > 0 {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		checkpoint(ctx)
	}
}

// ServeOptions configure Serve.
type ServeOptions struct {
	// NATS is how to connect (a user that may read RAMPART_SECURITY and
	// use the JetStream API, such as deploy/stack's ops user).
	NATS natsx.Options
	// DatabaseURL is the audit database (sqlite://… or postgres://…).
	DatabaseURL string
	// Trail configures the consumer; its JS and DB are filled in.
	Trail Options
	// OnReady, when set, is called once the consumer is consuming.
	OnReady func()
}

// Serve is the audit trail as a process: it connects to NATS and the
// database, migrates the audit table, makes sure the streams exist, and
// consumes until ctx ends. `audit run` and devstack call it.
func Serve(ctx context.Context, o ServeOptions) error {
	log := o.Trail.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		o.Trail.Logger = log
	}
	o.NATS.Logger = log
	db, err := dbx.Open(ctx, dbx.Options{URL: o.DatabaseURL, Logger: log, TracerProvider: o.Trail.TracerProvider})
	if err != nil {
		return fmt.Errorf("audit database: %w", err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := Migrate(ctx, db); err != nil {
		return err
	}
	nc, err := natsx.Connect(ctx, o.NATS)
	if err != nil {
		return fmt.Errorf("connect NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// The trail may start before any service has created the stream.
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		return fmt.Errorf("ensure streams: %w", err)
	}
	o.Trail.JS, o.Trail.DB = js, db
	t, err := New(ctx, o.Trail)
	if err != nil {
		return err
	}
	runDone := make(chan struct{})
	go func() { defer close(runDone); t.Run(ctx) }()
	if o.OnReady != nil {
		go func() {
			for !t.Ready() {
				select {
				case <-runDone:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			o.OnReady()
		}()
	}
	log.Info("audit trail consuming", slog.String("stream", natsx.StreamSecurity), slog.String("consumer", t.o.Name))
	<-runDone
	if ctx.Err() == nil {
		return errors.New("audit trail: consumer stopped")
	}
	log.Info("audit trail stopped")
	return nil
}
