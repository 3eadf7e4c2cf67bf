package store

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
)

// age sets the stored time of userID's key.
func age(t *testing.T, db *gorm.DB, userID, key string, at time.Time) {
	t.Helper()
	res := db.Model(&idemRow{}).Where("user_id = ? AND idem_key = ?", userID, key).Update("created_at", at)
	if res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("age key %s: %v (%d rows)", key, res.Error, res.RowsAffected)
	}
}

func countKeys(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Model(&idemRow{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIdempotencyKeyIsHonouredFor24Hours: a retry inside the window
// replays the first order; once the key is older than the window, even
// before the retention pass has deleted it, the same key makes a new order
// (whatever the request), and is honoured again from then on.
func TestIdempotencyKeyIsHonouredFor24Hours(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		alice := uuid.NewString()
		key := Idempotency{Key: "k-24h", Hash: "aaaa"}
		first, _, err := s.Create(ctx, newOrder(alice, 1), key)
		if err != nil {
			t.Fatal(err)
		}

		age(t, db, alice, key.Key, time.Now().UTC().Add(-IdempotencyWindow+time.Hour))
		if o, found, err := s.Replay(ctx, alice, key); err != nil || !found || o.ID != first.ID {
			t.Fatalf("Replay after 23 h: %v %v %s, want %s", err, found, o.ID, first.ID)
		}
		if o, replayed, err := s.Create(ctx, newOrder(alice, 1), key); err != nil || !replayed || o.ID != first.ID {
			t.Fatalf("retry after 23 h: %v %v %s, want a replay of %s", err, replayed, o.ID, first.ID)
		}

		age(t, db, alice, key.Key, time.Now().UTC().Add(-IdempotencyWindow-time.Minute))
		if _, found, err := s.Replay(ctx, alice, key); err != nil || found {
			t.Fatalf("Replay after 24 h: found=%v err=%v, want the key forgotten", found, err)
		}
		// Another request under the expired key: no mismatch, a new order.
		other := Idempotency{Key: key.Key, Hash: "bbbb"}
		second, replayed, err := s.Create(ctx, newOrder(alice, 2), other)
		if err != nil || replayed || second.ID == first.ID {
			t.Fatalf("new request after 24 h: %v replayed=%v id=%s (first %s)", err, replayed, second.ID, first.ID)
		}
		if o, replayed, err := s.Create(ctx, newOrder(alice, 2), other); err != nil || !replayed || o.ID != second.ID {
			t.Fatalf("retry of the new request: %v %v %s, want a replay of %s", err, replayed, o.ID, second.ID)
		}
		if n := countKeys(t, db); n != 1 {
			t.Errorf("%d key rows, want the one live key", n)
		}
		var orders int64
		db.Model(&orderRow{}).Where("user_id = ?", alice).Count(&orders)
		if orders != 2 {
			t.Errorf("%d orders, want 2", orders)
		}
	})
}

// TestPruneIdempotencyKeysDeletesOnlyExpiredKeys: keys past the window go,
// over more than one batch; live keys stay and still replay.
func TestPruneIdempotencyKeysDeletesOnlyExpiredKeys(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		alice := uuid.NewString()
		live := Idempotency{Key: "live", Hash: "aaaa"}
		o, _, err := s.Create(ctx, newOrder(alice, 1), live)
		if err != nil {
			t.Fatal(err)
		}
		age(t, db, alice, live.Key, time.Now().UTC().Add(-IdempotencyWindow+time.Minute))

		// A backlog of expired keys, larger than two batches (they may all
		// name one order: the key is the primary key, not the order).
		expired := 2*dbx.DefaultDeleteBatch + 5
		old := now().Add(-IdempotencyWindow - time.Hour)
		rows := make([]idemRow, expired)
		for i := range rows {
			rows[i] = idemRow{UserID: alice, Key: fmt.Sprintf("old-%05d", i), RequestHash: "x", OrderID: o.ID, CreatedAt: old}
		}
		if err := db.CreateInBatches(&rows, 200).Error; err != nil {
			t.Fatal(err)
		}

		n, err := s.PruneIdempotencyKeys(ctx)
		if err != nil || n != int64(expired) {
			t.Fatalf("pruned %d (%v), want %d", n, err, expired)
		}
		if got := countKeys(t, db); got != 1 {
			t.Errorf("%d keys left, want the live one", got)
		}
		if got, found, err := s.Replay(ctx, alice, live); err != nil || !found || got.ID != o.ID {
			t.Errorf("the live key after pruning: %v %v %s", err, found, got.ID)
		}
		if n, err := s.PruneIdempotencyKeys(ctx); err != nil || n != 0 {
			t.Errorf("a second pass pruned %d (%v)", n, err)
		}
	})
}

// TestRunPrunerPrunesAtStart: the worker's first pass runs at once.
func TestRunPrunerPrunesAtStart(t *testing.T) {
	db, s := open(t, dbxtest.SQLiteURL(t))
	alice := uuid.NewString()
	key := Idempotency{Key: "k", Hash: "aaaa"}
	if _, _, err := s.Create(context.Background(), newOrder(alice, 1), key); err != nil {
		t.Fatal(err)
	}
	age(t, db, alice, key.Key, time.Now().UTC().Add(-IdempotencyWindow-time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.RunPruner(ctx, slog.New(slog.DiscardHandler)) }()
	deadline := time.Now().Add(10 * time.Second)
	for countKeys(t, db) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired key is still there after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}
