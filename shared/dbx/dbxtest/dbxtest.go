// Package dbxtest gives repository tests a fresh database per test: a SQLite
// file always, and a scratch PostgreSQL database when
// RAMPART_TEST_POSTGRES_DSN is set — so one test proves a store on both.
package dbxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
)

// PostgresEnv names the variable holding an admin DSN for the test server.
const PostgresEnv = "RAMPART_TEST_POSTGRES_DSN"

// SQLiteURL returns a sqlite:// URL for a new file in t's temp dir.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return "sqlite://" + filepath.Join(t.TempDir(), "test.db")
}

// PostgresURL creates a uniquely named scratch database on the server in
// RAMPART_TEST_POSTGRES_DSN, drops it when t ends, and returns its URL. It
// skips t when the variable is unset.
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(PostgresEnv)
	if admin == "" {
		t.Skipf("%s not set", PostgresEnv)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to %s: %v", PostgresEnv, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "rampart_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		_ = conn.Close(ctx)
		t.Fatalf("create scratch database: %v", err)
	}
	_ = conn.Close(ctx)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Each runs fn as subtest "sqlite" and, when RAMPART_TEST_POSTGRES_DSN is
// set, "postgres", each on a fresh database.
func Each(t *testing.T, fn func(t *testing.T, url string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLiteURL(t)) })
	if os.Getenv(PostgresEnv) != "" {
		t.Run("postgres", func(t *testing.T) { fn(t, PostgresURL(t)) })
	}
}

// Open opens the database at url with dbx.Open, applies migrations (a
// service's embedded goose files), and closes it when t ends.
func Open(t testing.TB, url string, migrations fs.FS) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db, err := dbx.Open(ctx, dbx.Options{URL: url})
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	if err := dbx.Migrate(ctx, db, migrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}
