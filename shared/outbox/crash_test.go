package outbox

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
)

// crashAfterPublish publishes for real and then reports a failure, once:
// exactly what the relay sees when it dies after JetStream acknowledged
// the message and before it marked the row sent (the row stays pending).
type crashAfterPublish struct {
	pub     *natsx.Publisher
	crashed atomic.Bool
}

func (c *crashAfterPublish) Publish(ctx context.Context, subject string, ev natsx.Event) error {
	if err := c.pub.Publish(ctx, subject, ev); err != nil {
		return err
	}
	if c.crashed.CompareAndSwap(false, true) {
		return errors.New("relay killed between publish and mark")
	}
	return nil
}

// TestRelayKilledBetweenPublishAndMark: the event is published, the relay
// "dies" before marking it, and a fresh relay publishes the row again. The
// stream keeps one copy (Nats-Msg-Id is the event id, within the duplicate
// window), so a consumer receives it once: nothing lost, nothing twice.
// Beyond the window, consumers are idempotent on the event id
// (consumer.Once), tested in shared/consumer.
func TestRelayKilledBetweenPublishAndMark(t *testing.T) {
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
		subject := natsx.SubjectEventsPrefix + "widget.created.crash" + t.Name()[len(t.Name())-6:]
		ev, _ := natsx.NewEvent(ctx, "test", "widget.created", "w1", map[string]string{"id": "w1"})
		if err := dbx.InTx(ctx, db, func(tx *gorm.DB) error {
			if err := tx.Table("widgets").Create(&widget{ID: "w1"}).Error; err != nil {
				return err
			}
			return Add(tx, subject, ev)
		}); err != nil {
			t.Fatal(err)
		}

		pub := natsx.NewPublisher(js, noop.NewTracerProvider(), propagation.TraceContext{})
		dying, err := NewRelay(Options{DB: db, Publisher: &crashAfterPublish{pub: pub}, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := dying.Flush(ctx); err == nil || n != 0 {
			t.Fatalf("the dying relay: n=%d err=%v", n, err)
		}
		var pending int64
		db.Model(&Row{}).Where("published_at IS NULL").Count(&pending)
		if pending != 1 {
			t.Fatalf("%d pending rows after the crash, want 1 (published but not marked)", pending)
		}

		restarted, err := NewRelay(Options{DB: db, Publisher: pub, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := restarted.Flush(ctx); err != nil || n != 1 {
			t.Fatalf("the restarted relay: n=%d err=%v", n, err)
		}
		if n, _ := restarted.Flush(ctx); n != 0 {
			t.Fatalf("published again after marking: %d", n)
		}

		cons, err := js.OrderedConsumer(ctx, natsx.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("the event was lost: %v", err)
		}
		if got := m.Headers().Get("Nats-Msg-Id"); got != ev.ID {
			t.Errorf("Nats-Msg-Id %q, want %s", got, ev.ID)
		}
		if _, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond)); err == nil {
			t.Error("the consumer received the event twice")
		}
	})
}
