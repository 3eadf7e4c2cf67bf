package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
)

// Filter selects entries for Tail. Zero fields match everything.
type Filter struct {
	Type    string
	Subject string
	Service string
	// Since keeps events that happened at or after it (event time).
	Since time.Time
	// Limit is how many of the newest matching entries to return
	// (default 20, at most 10000).
	Limit int
}

// MaxTail bounds Filter.Limit.
const MaxTail = 10000

// Tail returns the newest entries matching f, oldest first.
func Tail(ctx context.Context, db *gorm.DB, f Filter) ([]Entry, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, MaxTail)
	q := db.WithContext(ctx).Model(&Entry{})
	if f.Type != "" {
		q = q.Where("type = ?", f.Type)
	}
	if f.Subject != "" {
		q = q.Where("subject = ?", f.Subject)
	}
	if f.Service != "" {
		q = q.Where("service = ?", f.Service)
	}
	if !f.Since.IsZero() {
		q = q.Where("event_time >= ?", f.Since.UTC())
	}
	var out []Entry
	if err := q.Order("seq DESC").Limit(limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// OpenExisting opens an audit database for reading (verify, tail): it does
// not migrate, and refuses a database without the audit table, so reading
// never creates an empty trail where an operator expected a full one. The
// caller closes it (db.DB() then Close).
func OpenExisting(ctx context.Context, url string) (*gorm.DB, error) {
	if url == "" {
		return nil, errors.New("no audit database URL")
	}
	if path, ok := strings.CutPrefix(url, "sqlite://"); ok {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("audit database: %w", err)
		}
	}
	db, err := dbx.Open(ctx, dbx.Options{URL: url})
	if err != nil {
		return nil, err
	}
	if !db.WithContext(ctx).Migrator().HasTable(&Entry{}) {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
		return nil, errors.New("audit database has no audit_log table (has `audit run` ever run against it?)")
	}
	return db, nil
}
