// Package store persists the user service's data with gorm. Its schema is
// the embedded goose migrations in migrations/, written to run unchanged on
// SQLite and PostgreSQL.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/user-service/internal/profile"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations is the schema, for dbx.Migrate.
var Migrations = mustSub(migrationFiles, "migrations")

func mustSub(f embed.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded at compile time
	}
	return sub
}

// Store is the gorm-backed profile repository.
type Store struct {
	db *gorm.DB
	// notify wakes the outbox relay after a commit that queued an event.
	notify func()
}

// New returns a Store on db; notify (optional) is called after a commit
// that wrote to the outbox.
func New(db *gorm.DB, notify func()) *Store {
	if notify == nil {
		notify = func() {}
	}
	return &Store{db: db, notify: notify}
}

type profileRow struct {
	ID          string    `gorm:"column:id;primaryKey"`
	Email       string    `gorm:"column:email"`
	DisplayName string    `gorm:"column:display_name"`
	Phone       string    `gorm:"column:phone"`
	Address     string    `gorm:"column:address"`
	CreatedAt   time.Time `gorm:"column:created_at"`
	UpdatedAt   time.Time `gorm:"column:updated_at"`
}

func (profileRow) TableName() string { return "profiles" }

func (r profileRow) profile() profile.Profile {
	return profile.Profile{ID: r.ID, Email: r.Email, DisplayName: r.DisplayName, Phone: r.Phone, Address: r.Address, CreatedAt: r.CreatedAt.UTC()}
}

type erasedRow struct {
	ID       string    `gorm:"column:id;primaryKey"`
	ErasedAt time.Time `gorm:"column:erased_at"`
}

func (erasedRow) TableName() string { return "erased_users" }

// Get returns the profile with id, or profile.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (profile.Profile, error) {
	var r profileRow
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return profile.Profile{}, profile.ErrNotFound
	}
	if err != nil {
		return profile.Profile{}, fmt.Errorf("get profile: %w", err)
	}
	return r.profile(), nil
}

// List returns up to limit profiles with ids after after, in id order, and
// the id to continue from ("" on the last page).
func (s *Store) List(ctx context.Context, after string, limit int) ([]profile.Profile, string, error) {
	var rows []profileRow
	q := s.db.WithContext(ctx).Order("id").Limit(limit + 1)
	if after != "" {
		q = q.Where("id > ?", after)
	}
	if err := q.Find(&rows).Error; err != nil {
		return nil, "", fmt.Errorf("list profiles: %w", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].ID
	}
	out := make([]profile.Profile, len(rows))
	for i, r := range rows {
		out[i] = r.profile()
	}
	return out, next, nil
}

// Update applies a validated patch to profile id and returns the result.
func (s *Store) Update(ctx context.Context, id string, p profile.Patch) (profile.Profile, error) {
	var out profile.Profile
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var r profileRow
		err := tx.Clauses(lockForUpdate(tx)...).Where("id = ?", id).Take(&r).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return profile.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("get profile: %w", err)
		}
		out = p.Apply(r.profile())
		return tx.Model(&profileRow{}).Where("id = ?", id).Updates(map[string]any{
			"display_name": out.DisplayName, "phone": out.Phone, "address": out.Address,
			"updated_at": time.Now().UTC(),
		}).Error
	})
	return out, err
}

// lockForUpdate is SELECT … FOR UPDATE on PostgreSQL; SQLite serialises
// writers anyway and has no such clause.
func lockForUpdate(tx *gorm.DB) []clause.Expression {
	if tx.Name() == "postgres" {
		return []clause.Expression{clause.Locking{Strength: "UPDATE"}}
	}
	return nil
}

// lockAccount serialises, per account, CreateFromAccount and Erase, so
// that each sees the other's commit. On PostgreSQL (READ COMMITTED) they
// otherwise ran side by side: the create found no erasure yet, the erasure
// no profile yet to delete, and the erased account's profile appeared
// after all. SQLite needs nothing: dbx opens its transactions IMMEDIATE,
// one writer at a time.
func lockAccount(tx *gorm.DB, id string) error {
	if tx.Name() != "postgres" {
		return nil
	}
	if err := tx.Exec("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", id).Error; err != nil {
		return fmt.Errorf("lock account: %w", err)
	}
	return nil
}

// CreateFromAccount makes the profile of a new account, exactly once per
// event (consumer.Once) and never for an erased user. It reports whether
// a profile was created.
func (s *Store) CreateFromAccount(ctx context.Context, consumerName, eventID string, a profile.Created) (bool, error) {
	created := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		first, err := consumer.Once(tx, consumerName, eventID)
		if err != nil || !first {
			return err
		}
		if err := lockAccount(tx, a.ID); err != nil {
			return err
		}
		var n int64
		if err := tx.Model(&erasedRow{}).Where("id = ?", a.ID).Count(&n).Error; err != nil {
			return fmt.Errorf("check erasure: %w", err)
		}
		if n > 0 {
			return nil
		}
		now := time.Now().UTC()
		at := a.CreatedAt.UTC()
		if at.IsZero() {
			at = now
		}
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&profileRow{
			ID: a.ID, Email: a.Email, DisplayName: a.DisplayName, CreatedAt: at, UpdatedAt: now,
		})
		created = res.RowsAffected == 1
		return res.Error
	})
	if err != nil {
		return false, fmt.Errorf("create profile: %w", err)
	}
	return created, nil
}

// Erase deletes profile id, remembers the erasure and queues user.deleted,
// all in one transaction: the other services learn of the erasure if and
// only if it happened. Erasing an id twice is not an error and queues no
// second event. An id with no profile yet (its account.created still in
// flight) is erased too, so the profile never appears.
func (s *Store) Erase(ctx context.Context, id, reason string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockAccount(tx, id); err != nil {
			return err
		}
		now := time.Now().UTC()
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&erasedRow{ID: id, ErasedAt: now})
		if res.Error != nil {
			return fmt.Errorf("record erasure: %w", res.Error)
		}
		if err := tx.Where("id = ?", id).Delete(&profileRow{}).Error; err != nil {
			return fmt.Errorf("delete profile: %w", err)
		}
		if res.RowsAffected == 0 {
			return nil // already erased: the event is already queued
		}
		ev, err := natsx.NewEvent(ctx, "user-service", "user.deleted", id, profile.Deleted{UserID: id, Reason: reason, Time: now})
		if err != nil {
			return err
		}
		return outbox.Add(tx, natsx.SubjectEventsPrefix+"user.deleted", ev)
	})
	if err != nil {
		return err
	}
	s.notify()
	return nil
}

// Erased reports whether id was erased.
func (s *Store) Erased(ctx context.Context, id string) (bool, error) {
	var n int64
	if err := s.db.WithContext(ctx).Model(&erasedRow{}).Where("id = ?", id).Count(&n).Error; err != nil {
		return false, fmt.Errorf("check erasure: %w", err)
	}
	return n > 0, nil
}
