package consumer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
)

var schema = fstest.MapFS{"0001_consumer.sql": {Data: []byte(`-- +goose Up
CREATE TABLE processed_events (
    consumer     VARCHAR(100) NOT NULL,
    event_id     VARCHAR(36)  NOT NULL,
    processed_at TIMESTAMP    NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
CREATE TABLE tally (id VARCHAR(36) PRIMARY KEY, n INTEGER NOT NULL);
-- +goose Down
DROP TABLE tally;
DROP TABLE processed_events;
`)}}

type tally struct {
	ID string
	N  int
}

func (tally) TableName() string { return "tally" }

func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := natsx.Connect(context.Background(), natsx.Options{URL: srv.ClientURL(), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return js
}

// publish sends ev with a fresh Nats-Msg-Id, as a relay retry outside the
// stream's duplicate window would: the stream stores it twice and only the
// consumer's Once can tell.
func publish(t *testing.T, js jetstream.JetStream, subject string, ev natsx.Event) {
	t.Helper()
	msg, err := natsx.Message(context.Background(), propagation.TraceContext{}, subject, ev)
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsumerAppliesEachEventOnce: duplicates, redeliveries after a
// failure and a replay of the whole stream change nothing; poison messages
// are terminated instead of blocking the consumer.
func TestConsumerAppliesEachEventOnce(t *testing.T) {
	js := jetStream(t)
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := t.Context()
		db := openDB(t, url)
		subject := natsx.SubjectEventsPrefix + "tally.added." + uuid.NewString()[:8]
		key := uuid.NewString()
		if err := db.Create(&tally{ID: key}).Error; err != nil {
			t.Fatal(err)
		}

		var failOnce sync.Once
		var calls atomic.Int32
		handle := func(name string) Handler {
			return func(ctx context.Context, ev natsx.Event) error {
				calls.Add(1)
				var data struct {
					Fail bool `json:"fail"`
				}
				if err := Decode(ev, &data); err != nil {
					return err
				}
				if data.Fail {
					injected := false
					failOnce.Do(func() { injected = true })
					if injected {
						return errors.New("transient failure")
					}
				}
				return dbx.InTx(ctx, db, func(tx *gorm.DB) error {
					first, err := Once(tx, name, ev.ID)
					if err != nil || !first {
						return err
					}
					return tx.Model(&tally{}).Where("id = ?", key).Update("n", gorm.Expr("n + 1")).Error
				})
			}
		}
		count := func() int {
			var row tally
			if err := db.Where("id = ?", key).Take(&row).Error; err != nil {
				t.Fatal(err)
			}
			return row.N
		}
		run := func(name string) (*Consumer, *prometheus.Registry, context.CancelFunc) {
			reg := prometheus.NewRegistry()
			c, err := New(ctx, Options{JS: js, Name: name, Subjects: []string{subject}, Handle: handle(name), Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { c.Run(runCtx); close(done) }()
			waitFor(t, "consumer ready", c.Ready)
			return c, reg, func() { cancel(); <-done }
		}

		name := "test-" + uuid.NewString()[:8]
		_, reg, stop := run(name)
		ev1, _ := natsx.NewEvent(ctx, "test", "tally.added", key, map[string]bool{"fail": false})
		ev2, _ := natsx.NewEvent(ctx, "test", "tally.added", key, map[string]bool{"fail": true})
		publish(t, js, subject, ev1)
		publish(t, js, subject, ev1) // a duplicate beyond the dedup window
		publish(t, js, subject, ev2) // fails once, then succeeds on redelivery
		// A poison message: not an envelope at all.
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: []byte("{not json"), Header: nats.Header{}}); err != nil {
			t.Fatal(err)
		}
		// An envelope whose data the handler cannot read.
		bad := natsx.Event{SpecVersion: "1.0", ID: uuid.NewString(), Type: "tally.added", Data: []byte(`"x"`)}
		publish(t, js, subject, bad)

		outcome := func(o string) float64 { return handled(t, reg, o) }
		waitFor(t, "all outcomes", func() bool {
			return outcome(outcomeOK) == 3 && outcome(outcomeRetry) == 1 && outcome(outcomeMalformed) == 1 && outcome(outcomeTerm) == 1
		})
		if got := count(); got != 2 {
			t.Fatalf("tally = %d after two distinct events, a duplicate and a retry; want 2", got)
		}
		stop()

		// Events published while the consumer is down are caught up...
		ev3, _ := natsx.NewEvent(ctx, "test", "tally.added", key, map[string]bool{"fail": false})
		publish(t, js, subject, ev3)
		_, reg, stop = run(name)
		waitFor(t, "catch-up", func() bool { return handled(t, reg, outcomeOK) == 1 })
		stop()
		if got := count(); got != 3 {
			t.Fatalf("tally = %d after catch-up, want 3", got)
		}

		// ...and replaying the whole stream with a fresh durable that shares
		// the processed_events name changes nothing.
		if err := js.DeleteConsumer(ctx, natsx.StreamEvents, name); err != nil {
			t.Fatal(err)
		}
		before := calls.Load()
		_, reg, stop = run(name)
		waitFor(t, "replay", func() bool { return handled(t, reg, outcomeOK) == 4 })
		stop()
		if calls.Load()-before < 4 {
			t.Fatalf("replay handled %d events, want at least 4", calls.Load()-before)
		}
		if got := count(); got != 3 {
			t.Fatalf("tally = %d after a full replay, want 3 (unchanged)", got)
		}
	})
}

// handled reads rampart_consumer_events_total{outcome} from reg.
func handled(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "rampart_consumer_events_total" && l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestBackoffAndPermanent(t *testing.T) {
	base := errors.New("boom")
	if !IsPermanent(Permanent(base)) || IsPermanent(base) {
		t.Fatal("IsPermanent does not recognise Permanent")
	}
	if !errors.Is(Permanent(base), base) {
		t.Fatal("Permanent hides the cause")
	}
	if _, err := New(context.Background(), Options{}); err == nil {
		t.Fatal("New accepted empty options")
	}
}

// TestExhaustedEventIsNotSilentlyDropped: an event that keeps failing with
// a transient error is delivered MaxDeliver times and then never again.
// That last failure is the event lost — for user.deleted, an erasure not
// applied — so it must be told apart from a retry: its own outcome and an
// error log, not "will retry".
func TestExhaustedEventIsNotSilentlyDropped(t *testing.T) {
	js := jetStream(t)
	ctx := t.Context()
	subject := natsx.SubjectEventsPrefix + "tally.added." + uuid.NewString()[:8]
	var calls atomic.Int32
	reg := prometheus.NewRegistry()
	c, err := New(ctx, Options{
		JS: js, Name: "test-" + uuid.NewString()[:8], Subjects: []string{subject}, MaxDeliver: 2, Registerer: reg,
		Handle: func(context.Context, natsx.Event) error {
			calls.Add(1)
			return errors.New("database unreachable")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "consumer ready", c.Ready)

	ev, _ := natsx.NewEvent(ctx, "test", "tally.added", "k", map[string]bool{})
	publish(t, js, subject, ev)
	waitFor(t, "two deliveries", func() bool { return calls.Load() == 2 })
	waitFor(t, "the last failure counted", func() bool {
		return handled(t, reg, outcomeRetry)+handled(t, reg, outcomeExhausted) == 2
	})
	if r, x := handled(t, reg, outcomeRetry), handled(t, reg, outcomeExhausted); r != 1 || x != 1 {
		t.Fatalf("outcomes retry=%v exhausted=%v, want 1 and 1", r, x)
	}
}

// TestEventIDThatCannotBeRecordedIsMalformed: Once records the event id in
// processed_events.event_id, VARCHAR(36), the length of the UUIDs that
// natsx.NewEvent makes. An envelope with any other id can never be
// recorded on PostgreSQL: every delivery would fail the same way until the
// retries run out a quarter of an hour later. It is malformed, terminated
// at once, and the handler never sees it.
func TestEventIDThatCannotBeRecordedIsMalformed(t *testing.T) {
	js := jetStream(t)
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := t.Context()
		db := openDB(t, url)
		subject := natsx.SubjectEventsPrefix + "tally.added." + uuid.NewString()[:8]
		name := "test-" + uuid.NewString()[:8]
		var calls atomic.Int32
		reg := prometheus.NewRegistry()
		c, err := New(ctx, Options{
			JS: js, Name: name, Subjects: []string{subject}, Registerer: reg,
			Handle: func(ctx context.Context, ev natsx.Event) error {
				calls.Add(1)
				return dbx.InTx(ctx, db, func(tx *gorm.DB) error {
					_, err := Once(tx, name, ev.ID)
					return err
				})
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { c.Run(runCtx); close(done) }()
		defer func() { cancel(); <-done }()
		waitFor(t, "consumer ready", c.Ready)

		for _, id := range []string{uuid.NewString() + "-and-more", strings.Repeat("x", 36), "{" + uuid.NewString() + "}"} {
			publish(t, js, subject, natsx.Event{SpecVersion: "1.0", ID: id, Type: "tally.added", Data: []byte(`{}`)})
		}
		good, _ := natsx.NewEvent(ctx, "test", "tally.added", "k", map[string]bool{})
		publish(t, js, subject, good)
		waitFor(t, "every event handled", func() bool {
			return handled(t, reg, outcomeOK)+handled(t, reg, outcomeMalformed)+handled(t, reg, outcomeRetry) >= 4
		})
		if m, ok, r := handled(t, reg, outcomeMalformed), handled(t, reg, outcomeOK), handled(t, reg, outcomeRetry); m != 3 || ok != 1 || r != 0 {
			t.Fatalf("malformed=%v ok=%v retry=%v, want 3, 1, 0", m, ok, r)
		}
		if calls.Load() != 1 {
			t.Fatalf("the handler saw %d events, want only the well-formed one", calls.Load())
		}
	})
}
