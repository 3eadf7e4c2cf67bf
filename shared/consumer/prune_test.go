package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
)

func openDB(t *testing.T, url string) *gorm.DB { return dbxtest.Open(t, url, schema) }

// record inserts n processed_events rows for each consumer, processed at
// at, with event ids prefix-00000…; the consumers share the ids.
func record(t *testing.T, db *gorm.DB, consumers []string, prefix string, n int, at time.Time) {
	t.Helper()
	rows := make([]processed, 0, n*len(consumers))
	for _, c := range consumers {
		for i := range n {
			rows = append(rows, processed{Consumer: c, EventID: fmt.Sprintf("%s-%05d", prefix, i), ProcessedAt: at})
		}
	}
	if err := db.CreateInBatches(&rows, 200).Error; err != nil {
		t.Fatal(err)
	}
}

func countProcessed(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Model(&processed{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPrunerForgetsOnlyEventsTheStreamNoLongerHolds: rows older than the
// retention go, over several batches; a row whose event the stream may
// still deliver stays, so Once keeps refusing that event.
func TestPrunerForgetsOnlyEventsTheStreamNoLongerHolds(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openDB(t, url)
		now := time.Now().UTC()
		consumers := []string{"svc-a", "svc-b"}
		perConsumer := dbx.DefaultDeleteBatch + 9 // two consumers: three statements
		record(t, db, consumers, "gone", perConsumer, now.Add(-DefaultRetention-time.Hour))
		// Still inside the stream's MaxAge: a replay may deliver these.
		record(t, db, consumers, "kept", 3, now.Add(-natsx.EventsMaxAge+time.Hour))
		if first, err := Once(db, "svc-a", "fresh"); err != nil || !first {
			t.Fatalf("Once on a new event: %v %v", first, err)
		}

		reg := prometheus.NewRegistry()
		p, err := NewPruner(PrunerOptions{DB: db, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(perConsumer * len(consumers))
		if n, err := p.Prune(ctx); err != nil || n != want {
			t.Fatalf("pruned %d (%v), want %d", n, err, want)
		}
		if got := testutil.ToFloat64(p.pruned); got != float64(want) {
			t.Errorf("rampart_consumer_processed_events_pruned_total = %v, want %d", got, want)
		}
		if got := countProcessed(t, db); got != 7 {
			t.Errorf("%d rows left, want the 6 inside the stream's age and the fresh one", got)
		}
		for _, id := range []string{"kept-00000", "fresh"} {
			if first, err := Once(db, "svc-a", id); err != nil || first {
				t.Errorf("Once(%s) after pruning = %v, %v: a redelivery would be applied twice", id, first, err)
			}
		}
		if n, err := p.Prune(ctx); err != nil || n != 0 {
			t.Errorf("a second pass pruned %d (%v)", n, err)
		}
	})
}

// TestPrunerRefusesARetentionTheStreamOutlives: keeping rows for less than
// the stream keeps events would let a replay apply an event twice.
func TestPrunerRefusesARetentionTheStreamOutlives(t *testing.T) {
	db := openDB(t, dbxtest.SQLiteURL(t))
	if DefaultRetention <= natsx.EventsMaxAge {
		t.Fatalf("DefaultRetention %v does not exceed the stream's %v", DefaultRetention, natsx.EventsMaxAge)
	}
	for _, r := range []time.Duration{time.Hour, natsx.EventsMaxAge, -time.Hour} {
		if _, err := NewPruner(PrunerOptions{DB: db, Retention: r}); err == nil {
			t.Errorf("retention %v accepted", r)
		}
	}
	if _, err := NewPruner(PrunerOptions{}); err == nil {
		t.Error("a pruner without DB accepted")
	}
}

// TestPrunerRunPrunesAtStart: Run does a pass as soon as it starts.
func TestPrunerRunPrunesAtStart(t *testing.T) {
	db := openDB(t, dbxtest.SQLiteURL(t))
	record(t, db, []string{"svc"}, "gone", 5, time.Now().UTC().Add(-DefaultRetention-time.Hour))
	p, err := NewPruner(PrunerOptions{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	waitFor(t, "the first pass", func() bool { return countProcessed(t, db) == 0 })
	cancel()
	<-done
}
