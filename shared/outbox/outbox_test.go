package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
)

var schema = fstest.MapFS{"0001_outbox.sql": {Data: []byte(`-- +goose Up
CREATE TABLE outbox (
    id           VARCHAR(36)  PRIMARY KEY,
    subject      VARCHAR(200) NOT NULL,
    payload      TEXT         NOT NULL,
    created_at   TIMESTAMP    NOT NULL,
    published_at TIMESTAMP    NULL,
    attempts     INTEGER      NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (published_at, created_at);
CREATE TABLE widgets (id VARCHAR(36) PRIMARY KEY);
-- +goose Down
DROP TABLE widgets;
DROP TABLE outbox;
`)}}

type widget struct{ ID string }

func openDB(t *testing.T, url string) *gorm.DB { return dbxtest.Open(t, url, schema) }

// flaky publishes through JetStream, or fails while down is set.
type flaky struct {
	mu   sync.Mutex
	down bool
	pub  *natsx.Publisher
}

func (f *flaky) Publish(ctx context.Context, subject string, ev natsx.Event) error {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return errors.New("nats unreachable")
	}
	return f.pub.Publish(ctx, subject, ev)
}

func TestEventsLeaveOnlyAfterCommitAndSurviveOutages(t *testing.T) {
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
	js, _ := jetstream.New(nc)
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}

	dbxtest.Each(t, func(t *testing.T, url string) {
		db := openDB(t, url)
		f := &flaky{pub: natsx.NewPublisher(js, noop.NewTracerProvider(), propagation.TraceContext{})}
		reg := prometheus.NewRegistry()
		relay, err := NewRelay(Options{DB: db, Publisher: f, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		subject := natsx.SubjectEventsPrefix + "widget.created." + t.Name()[len(t.Name())-6:]

		// A rolled-back change leaves no event.
		rolledBack := errors.New("rollback")
		err = dbx.InTx(ctx, db, func(tx *gorm.DB) error {
			ev, _ := natsx.NewEvent(ctx, "test", "widget.created", "w0", map[string]string{"id": "w0"})
			if err := tx.Table("widgets").Create(&widget{ID: "w0"}).Error; err != nil {
				return err
			}
			if err := Add(tx, subject, ev); err != nil {
				return err
			}
			return rolledBack
		})
		if !errors.Is(err, rolledBack) {
			t.Fatal(err)
		}
		// Two committed changes, written while NATS is "down".
		f.down = true
		ids := []string{}
		for _, id := range []string{"w1", "w2"} {
			ev, _ := natsx.NewEvent(ctx, "test", "widget.created", id, map[string]string{"id": id})
			ids = append(ids, ev.ID)
			if err := dbx.InTx(ctx, db, func(tx *gorm.DB) error {
				if err := tx.Table("widgets").Create(&widget{ID: id}).Error; err != nil {
					return err
				}
				return Add(tx, subject, ev)
			}); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := relay.Flush(ctx); err == nil || n != 0 {
			t.Fatalf("flush with NATS down: n=%d err=%v", n, err)
		}
		if got := testutil.ToFloat64(relay.pending); got != 2 {
			t.Errorf("pending gauge = %v, want 2", got)
		}
		if testutil.ToFloat64(relay.failed) != 1 {
			t.Error("failure not counted")
		}

		f.mu.Lock()
		f.down = false
		f.mu.Unlock()
		if n, err := relay.Flush(ctx); err != nil || n != 2 {
			t.Fatalf("flush after recovery: n=%d err=%v", n, err)
		}
		if n, _ := relay.Flush(ctx); n != 0 {
			t.Fatalf("published twice: %d", n)
		}
		if testutil.ToFloat64(relay.pending) != 0 || testutil.ToFloat64(relay.oldest) != 0 {
			t.Error("gauges not cleared")
		}

		// The stream holds exactly the committed events, in order.
		cons, err := js.OrderedConsumer(ctx, natsx.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for range 2 {
			m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var ev natsx.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			got = append(got, ev.ID)
		}
		if got[0] != ids[0] || got[1] != ids[1] {
			t.Errorf("stream order %v, want %v", got, ids)
		}
		if _, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond)); err == nil {
			t.Error("the rolled-back event was published")
		}
	})
}
