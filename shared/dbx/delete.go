package dbx

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
)

// DefaultDeleteBatch is the most rows one statement of DeleteBatched
// deletes unless told otherwise.
const DefaultDeleteBatch = 1000

// Batch describes a DeleteBatched: which rows of which table go.
type Batch struct {
	// Model names the table (a row type with TableName, as for gorm).
	Model any
	// Key lists the table's primary-key columns: "id", or
	// "consumer, event_id" for a composite key.
	Key string
	// Where and Args select the rows to delete ("published_at < ?"). The
	// predicate should be served by an index: each statement looks up at
	// most Size matching rows.
	Where string
	Args  []any
	// Size is the most rows one statement deletes (DefaultDeleteBatch when
	// zero or negative).
	Size int
}

// DeleteBatched deletes the rows b selects, at most b.Size rows per
// statement, repeating until a statement deletes fewer. A retention pass
// over a large backlog therefore never holds SQLite's single write lock
// (or PostgreSQL row locks) for long: every statement commits on its own,
// and writers queued behind one get their turn before the next. Run it on
// the database handle, not inside a transaction, or the whole pass becomes
// one long write again.
//
// Each statement is
//
//	DELETE FROM t WHERE (key) IN (SELECT key FROM t WHERE … LIMIT n)
//
// because SQLite builds usually lack DELETE … LIMIT and PostgreSQL has
// none; both accept a row value compared with a subquery. It returns how
// many rows it deleted, also when it stops on an error (the context's, or
// the database's: "delete <table>: …").
func DeleteBatched(ctx context.Context, db *gorm.DB, b Batch) (int64, error) {
	size := b.Size
	if size <= 0 {
		size = DefaultDeleteBatch
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		pick := db.WithContext(ctx).Model(b.Model).Select(b.Key).Where(b.Where, b.Args...).Limit(size)
		res := db.WithContext(ctx).Where("("+b.Key+") IN (?)", pick).Delete(b.Model)
		total += res.RowsAffected
		if res.Error != nil {
			return total, fmt.Errorf("delete %s: %w", tableName(b.Model), res.Error)
		}
		if res.RowsAffected < int64(size) {
			return total, nil
		}
	}
}

// tableName is model's table, for error messages.
func tableName(model any) string {
	if t, ok := model.(interface{ TableName() string }); ok {
		return t.TableName()
	}
	return fmt.Sprintf("%T", model)
}

// RunRetention runs pass at once and then every interval until ctx ends: the
// loop of every retention pass (outbox, processed_events, idempotency
// keys). A failed pass is logged and tried again at the next tick; what
// names the table in the log lines.
func RunRetention(ctx context.Context, interval time.Duration, log *slog.Logger, what string, pass func(context.Context) (int64, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := pass(ctx); err != nil && ctx.Err() == nil {
			log.Warn(what+" retention pass failed", slog.Any("error", err), slog.Int64("deleted", n))
		} else if n > 0 {
			log.Debug(what+" retention pass", slog.Int64("deleted", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
