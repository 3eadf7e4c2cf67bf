package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
)

// recorder is a Publisher that remembers what it published and fails the
// publish number failAt (1-based; 0 never).
type recorder struct {
	mu     sync.Mutex
	ids    []string
	calls  int
	failAt int
}

func (r *recorder) Publish(_ context.Context, _ string, ev natsx.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls == r.failAt {
		return errors.New("nats unreachable")
	}
	r.ids = append(r.ids, ev.ID)
	return nil
}

func (r *recorder) published() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// seed inserts n rows created at created and published at published (nil:
// pending), with ids prefix-0000…, and returns the ids in creation order.
func seed(t *testing.T, db *gorm.DB, prefix string, n int, created time.Time, published *time.Time) []string {
	t.Helper()
	rows := make([]Row, n)
	ids := make([]string, n)
	for i := range rows {
		ids[i] = fmt.Sprintf("%s-%05d", prefix, i)
		payload, err := json.Marshal(natsx.Event{SpecVersion: "1.0", ID: ids[i], Type: "widget.created", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = Row{ID: ids[i], Subject: natsx.SubjectEventsPrefix + "widget.created", Payload: string(payload),
			CreatedAt: created.Add(time.Duration(i) * time.Microsecond), PublishedAt: published}
	}
	if err := db.CreateInBatches(&rows, 200).Error; err != nil {
		t.Fatal(err)
	}
	return ids
}

func countRows(t *testing.T, db *gorm.DB, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.Model(&Row{}).Where(where, args...).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPruneDeletesOnlyPublishedRowsPastRetention: the retention pass
// deletes rows published longer ago than the retention, over more than
// one batch; a pending row stays whatever its age (it is an event still
// owed to the stream), and so does a recently published one.
func TestPruneDeletesOnlyPublishedRowsPastRetention(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openDB(t, url)
		now := time.Now().UTC()
		longAgo, recently := now.Add(-DefaultRetention-time.Hour), now.Add(-time.Hour)
		backlog := 2*dbx.DefaultDeleteBatch + 17 // three statements
		seed(t, db, "old", backlog, longAgo.Add(-time.Minute), &longAgo)
		seed(t, db, "stuck", 3, now.Add(-30*24*time.Hour), nil)
		seed(t, db, "recent", 3, recently.Add(-time.Minute), &recently)

		relay, err := NewRelay(Options{DB: db, Publisher: &recorder{}, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		n, err := relay.Prune(ctx)
		if err != nil || n != int64(backlog) {
			t.Fatalf("pruned %d (%v), want the %d rows published over a day ago", n, err, backlog)
		}
		if got := testutil.ToFloat64(relay.pruned); got != float64(backlog) {
			t.Errorf("rampart_outbox_pruned_total = %v, want %d", got, backlog)
		}
		if got := countRows(t, db, "published_at IS NULL"); got != 3 {
			t.Errorf("%d pending rows left, want the 3 month-old ones", got)
		}
		if got := countRows(t, db, "published_at IS NOT NULL"); got != 3 {
			t.Errorf("%d published rows left, want the 3 recent ones", got)
		}
		if n, err := relay.Prune(ctx); err != nil || n != 0 {
			t.Errorf("a second pass pruned %d (%v)", n, err)
		}

		// A shorter retention, configured, takes the recent rows too; the
		// pending ones still stay.
		short, err := NewRelay(Options{DB: db, Publisher: &recorder{}, Registerer: prometheus.NewRegistry(), Retention: 30 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := short.Prune(ctx); err != nil || n != 3 {
			t.Errorf("30-minute retention pruned %d (%v), want 3", n, err)
		}
		if got := countRows(t, db, "1 = 1"); got != 3 {
			t.Errorf("%d rows left, want the 3 pending ones", got)
		}
	})
}

// TestRunPrunesAtStart: the relay's Run runs the retention pass as soon as
// it starts, next to publishing.
func TestRunPrunesAtStart(t *testing.T) {
	db := openDB(t, dbxtest.SQLiteURL(t))
	longAgo := time.Now().UTC().Add(-DefaultRetention - time.Hour)
	seed(t, db, "old", 5, longAgo, &longAgo)
	pending := seed(t, db, "new", 2, time.Now().UTC(), nil)
	pub := &recorder{}
	relay, err := NewRelay(Options{DB: db, Publisher: pub, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); relay.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for countRows(t, db, "id LIKE ?", "old-%") != 0 || len(pub.published()) != len(pending) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d old rows left, %d of 2 published", countRows(t, db, "id LIKE ?", "old-%"), len(pub.published()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestFlushMarksEachBatchWithOneUpdate: a clean pass marks its batch with
// one UPDATE, not one per row; a publish failure stops the pass (order is
// kept) after marking the rows already published, so they are not sent
// again, and counts an attempt on the failed row only.
func TestFlushMarksEachBatchWithOneUpdate(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openDB(t, url)
		var updates atomic.Int32
		if err := db.Callback().Update().After("gorm:update").Register("test:count", func(*gorm.DB) { updates.Add(1) }); err != nil {
			t.Fatal(err)
		}
		ids := seed(t, db, "ev", 5, time.Now().UTC().Add(-time.Minute), nil)

		pub := &recorder{failAt: 3}
		relay, err := NewRelay(Options{DB: db, Publisher: pub, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := relay.Flush(ctx); err == nil || n != 2 {
			t.Fatalf("flush failing on the third publish: n=%d err=%v", n, err)
		}
		if got := countRows(t, db, "published_at IS NOT NULL AND id IN ?", ids[:2]); got != 2 {
			t.Errorf("%d of the 2 rows published before the failure are marked", got)
		}
		var failed Row
		if err := db.Where("id = ?", ids[2]).Take(&failed).Error; err != nil {
			t.Fatal(err)
		}
		if failed.PublishedAt != nil || failed.Attempts != 1 {
			t.Errorf("failed row: published %v, attempts %d; want pending with 1 attempt", failed.PublishedAt, failed.Attempts)
		}
		if got := countRows(t, db, "published_at IS NULL AND attempts = 0 AND id IN ?", ids[3:]); got != 2 {
			t.Errorf("%d of the rows after the failure untouched, want 2", got)
		}

		updates.Store(0)
		if n, err := relay.Flush(ctx); err != nil || n != 3 {
			t.Fatalf("flush after recovery: n=%d err=%v", n, err)
		}
		if got := updates.Load(); got != 1 {
			t.Errorf("%d UPDATE statements to mark 3 rows, want 1", got)
		}
		if got := pub.published(); fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Errorf("published %v, want each row once, in order: %v", got, ids)
		}
		if got := countRows(t, db, "published_at IS NULL"); got != 0 {
			t.Errorf("%d rows still pending", got)
		}
	})
}

func TestNewRelayRefusesANegativeRetention(t *testing.T) {
	db := openDB(t, dbxtest.SQLiteURL(t))
	if _, err := NewRelay(Options{DB: db, Publisher: &recorder{}, Registerer: prometheus.NewRegistry(), Retention: -time.Hour}); err == nil {
		t.Fatal("a negative retention was accepted")
	}
}
