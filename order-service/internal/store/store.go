// Package store persists the order service's data with gorm. Its schema is
// the embedded goose migrations in migrations/, written to run unchanged on
// SQLite and PostgreSQL.
package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"gorm.io/gorm"

	"github.com/rampart-go/rampart/order-service/internal/order"
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

// Store is the gorm-backed repository.
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

type catalogRow struct {
	SKU        string `gorm:"column:sku;primaryKey"`
	Name       string `gorm:"column:name"`
	PriceCents int64  `gorm:"column:price_cents"`
	Currency   string `gorm:"column:currency"`
}

func (catalogRow) TableName() string { return "catalog_items" }

// ListCatalog returns every catalogue item, ordered by SKU.
func (s *Store) ListCatalog(ctx context.Context) ([]order.CatalogItem, error) {
	var rows []catalogRow
	if err := s.db.WithContext(ctx).Order("sku").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list catalogue: %w", err)
	}
	items := make([]order.CatalogItem, len(rows))
	for i, r := range rows {
		items[i] = order.CatalogItem{SKU: r.SKU, Name: r.Name, PriceCents: r.PriceCents, Currency: r.Currency}
	}
	return items, nil
}
