package store

import (
	"context"
	"os"
	"testing"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
)

// eachDB runs a benchmark on SQLite and, when RAMPART_TEST_POSTGRES_DSN is
// set, PostgreSQL, each on a fresh migrated database.
func eachDB(b *testing.B, fn func(b *testing.B, s *Store)) {
	b.Run("sqlite", func(b *testing.B) {
		_, s := open(b, dbxtest.SQLiteURL(b))
		fn(b, s)
	})
	if os.Getenv(dbxtest.PostgresEnv) != "" {
		b.Run("postgres", func(b *testing.B) {
			_, s := open(b, dbxtest.PostgresURL(b))
			fn(b, s)
		})
	}
}

// BenchmarkCreateOrder is the write path of POST /orders after the
// customer lookup: one transaction with the order, its line, the
// idempotency key and the outbox row.
func BenchmarkCreateOrder(b *testing.B) {
	eachDB(b, func(b *testing.B, s *Store) {
		ctx := context.Background()
		user := uuid.NewString()
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.Create(ctx, newOrder(user, 2), Idempotency{Key: uuid.NewString(), Hash: "h"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkListOrders is GET /orders: one page of 20 of a customer's
// orders (among 2,000 orders of 100 customers) with their lines, in two
// queries.
func BenchmarkListOrders(b *testing.B) {
	eachDB(b, func(b *testing.B, s *Store) {
		ctx := context.Background()
		users := make([]string, 100)
		for i := range users {
			users[i] = uuid.NewString()
		}
		for i := range 2000 {
			if _, _, err := s.Create(ctx, newOrder(users[i%len(users)], 1), Idempotency{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			page, _, err := s.List(ctx, users[i%len(users)], "", 20)
			if err != nil || len(page) != 20 {
				b.Fatalf("%d orders: %v", len(page), err)
			}
			i++
		}
	})
}
