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
type Store struct{ db *gorm.DB }

// New returns a Store on db.
func New(db *gorm.DB) *Store { return &Store{db: db} }

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
	return profile.Profile{ID: r.ID, Email: r.Email, DisplayName: r.DisplayName, Phone: r.Phone, Address: r.Address, CreatedAt: r.CreatedAt.UTC()}, nil
}
