package store

import (
	"context"
	"testing"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
)

// TestCatalogueIsSeededByMigration runs the real migrations on SQLite and,
// when RAMPART_TEST_POSTGRES_DSN is set, PostgreSQL: the catalogue is there,
// priced in integer minor units, in SKU order.
func TestCatalogueIsSeededByMigration(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, err := dbx.Open(ctx, dbx.Options{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if sqlDB, err := db.DB(); err == nil {
				_ = sqlDB.Close()
			}
		})
		for range 2 { // migrating twice is a no-op
			if err := dbx.Migrate(ctx, db, Migrations); err != nil {
				t.Fatal(err)
			}
		}
		items, err := New(db, nil).ListCatalog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 5 {
			t.Fatalf("want 5 seeded items, got %d", len(items))
		}
		for i, it := range items {
			if it.PriceCents <= 0 || it.Currency != "EUR" || it.Name == "" {
				t.Errorf("item %+v", it)
			}
			if i > 0 && items[i-1].SKU >= it.SKU {
				t.Errorf("not in SKU order: %s before %s", items[i-1].SKU, it.SKU)
			}
		}
	})
}
