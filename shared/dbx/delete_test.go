package dbx_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
)

var marksSchema = fstest.MapFS{"0001_marks.sql": {Data: []byte(`-- +goose Up
CREATE TABLE marks (
    owner  VARCHAR(36) NOT NULL,
    id     VARCHAR(36) NOT NULL,
    at     TIMESTAMP   NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE INDEX marks_at ON marks (at);
-- +goose Down
DROP TABLE marks;
`)}}

type mark struct {
	Owner string `gorm:"primaryKey"`
	ID    string `gorm:"primaryKey"`
	At    time.Time
}

func (mark) TableName() string { return "marks" }

// TestDeleteBatchedDeletesEveryMatchInBoundedStatements: a backlog larger
// than several batches goes entirely, on a composite key, and rows the
// predicate does not select stay.
func TestDeleteBatchedDeletesEveryMatchInBoundedStatements(t *testing.T) {
	t.Parallel()
	dbxtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		ctx := context.Background()
		db := open(t, url, dbx.Options{})
		if err := dbx.Migrate(ctx, db, marksSchema); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		var rows []mark
		for i := range 25 {
			// Two owners share ids: only the pair is unique.
			rows = append(rows, mark{Owner: fmt.Sprint("o", i%2), ID: fmt.Sprint("old-", i/2), At: now.Add(-time.Hour)})
		}
		for i := range 5 {
			rows = append(rows, mark{Owner: "o0", ID: fmt.Sprint("new-", i), At: now})
		}
		if err := db.Create(&rows).Error; err != nil {
			t.Fatal(err)
		}

		var statements atomic.Int32
		if err := db.Callback().Delete().After("gorm:delete").Register("test:count", func(*gorm.DB) { statements.Add(1) }); err != nil {
			t.Fatal(err)
		}
		b := dbx.Batch{Model: &mark{}, Key: "owner, id", Where: "at < ?", Args: []any{now.Add(-time.Minute)}, Size: 10}
		n, err := dbx.DeleteBatched(ctx, db, b)
		if err != nil || n != 25 {
			t.Fatalf("deleted %d (%v), want the 25 old rows", n, err)
		}
		if got := statements.Load(); got != 3 {
			t.Errorf("%d DELETE statements, want 3 (10 + 10 + 5 rows)", got)
		}
		if got := count(t, db, "marks"); got != 5 {
			t.Fatalf("%d rows left, want the 5 recent ones", got)
		}
		if n, err := dbx.DeleteBatched(ctx, db, b); err != nil || n != 0 {
			t.Fatalf("second pass deleted %d (%v)", n, err)
		}

		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		b.Args = []any{now.Add(time.Minute)}
		if _, err := dbx.DeleteBatched(cancelled, db, b); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled pass: %v", err)
		}
		if got := count(t, db, "marks"); got != 5 {
			t.Fatalf("a cancelled pass deleted rows: %d left", got)
		}
	})
}

// TestRunRetention: a pass runs at once, again every interval, and a failed
// pass does not stop the loop; the loop returns when ctx ends.
func TestRunRetention(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	passes := make(chan int32, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		dbx.RunRetention(ctx, 10*time.Millisecond, slog.New(slog.DiscardHandler), "marks", func(context.Context) (int64, error) {
			n := calls.Add(1)
			passes <- n
			if n == 2 {
				return 0, errors.New("database is locked")
			}
			return 1, nil
		})
	}()
	for want := int32(1); want <= 3; want++ {
		select {
		case got := <-passes:
			if got != want {
				t.Fatalf("pass %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("pass %d never ran (a failed pass stops the loop?)", want)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunRetention did not return after ctx ended")
	}
}
