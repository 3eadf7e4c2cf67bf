package dbx_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
)

// migrations is a small set in the portable SQL dbx promises: it runs
// unchanged on SQLite and PostgreSQL. 0002 inserts a row, so running it
// twice would show (a second row, or a primary-key violation).
var migrations = fstest.MapFS{
	"0001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (
    id         VARCHAR(36)  PRIMARY KEY,
    name       VARCHAR(100) NOT NULL,
    created_at TIMESTAMP    NOT NULL
);
-- +goose Down
DROP TABLE widgets;
`)},
	"0002_seed.sql": {Data: []byte(`-- +goose Up
INSERT INTO widgets (id, name, created_at) VALUES ('seed', 'seeded', '2026-01-01 00:00:00');
-- +goose Down
DELETE FROM widgets WHERE id = 'seed';
`)},
}

type widget struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

func open(t *testing.T, url string, o dbx.Options) *gorm.DB {
	t.Helper()
	o.URL = url
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := dbx.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	})
	return db
}

func count(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Table(table).Count(&n).Error; err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// appliedVersions counts goose's applied migrations (its table also holds a
// version-0 row).
func appliedVersions(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Table("goose_db_version").Where("version_id > 0 AND is_applied").Count(&n).Error; err != nil {
		t.Fatalf("read goose_db_version: %v", err)
	}
	return n
}

func TestOpenMigrateAndDialect(t *testing.T) {
	t.Parallel()
	dbxtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		ctx := context.Background()
		db := open(t, url, dbx.Options{})

		want := "sqlite"
		if strings.HasPrefix(url, "postgres") {
			want = "postgres"
		}
		if got := dbx.Dialect(db); got != want {
			t.Errorf("Dialect = %q, want %q", got, want)
		}
		if err := dbx.Ping(ctx, db); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		sqlDB, err := db.DB()
		if err != nil {
			t.Fatal(err)
		}
		wantMax := map[string]int{"sqlite": 4, "postgres": 20}[want]
		if got := sqlDB.Stats().MaxOpenConnections; got != wantMax {
			t.Errorf("default pool size %d, want %d for %s", got, wantMax, want)
		}

		if err := dbx.Migrate(ctx, db, migrations); err != nil {
			t.Fatal(err)
		}
		if got := appliedVersions(t, db); got != 2 {
			t.Fatalf("%d migrations applied, want 2", got)
		}
		// A second run is a no-op: the seed row is not inserted again.
		if err := dbx.Migrate(ctx, db, migrations); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if got := appliedVersions(t, db); got != 2 {
			t.Errorf("%d migrations applied after a second run, want 2", got)
		}
		if got := count(t, db, "widgets"); got != 1 {
			t.Errorf("%d widgets after a second run, want the one seed", got)
		}

		// A release with one more migration applies only that one.
		next := fstest.MapFS{"0003_more.sql": {Data: []byte(`-- +goose Up
INSERT INTO widgets (id, name, created_at) VALUES ('three', 'third', '2026-01-02 00:00:00');
-- +goose Down
DELETE FROM widgets WHERE id = 'three';
`)}}
		for k, v := range migrations {
			next[k] = v
		}
		if err := dbx.Migrate(ctx, db, next); err != nil {
			t.Fatal(err)
		}
		if got := count(t, db, "widgets"); got != 2 {
			t.Errorf("%d widgets after adding 0003, want 2", got)
		}

		// A broken migration is an error, and rolled back (goose runs each
		// file in a transaction).
		broken := fstest.MapFS{"0004_broken.sql": {Data: []byte(`-- +goose Up
INSERT INTO widgets (id, name, created_at) VALUES ('four', 'fourth', '2026-01-03 00:00:00');
INSERT INTO no_such_table VALUES (1);
-- +goose Down
SELECT 1;
`)}}
		for k, v := range next {
			broken[k] = v
		}
		if err := dbx.Migrate(ctx, db, broken); err == nil || !strings.HasPrefix(err.Error(), "migrate: ") {
			t.Errorf("a broken migration: %v, want a migrate: error", err)
		}
		if got := count(t, db, "widgets"); got != 2 {
			t.Errorf("%d widgets after a failed migration, want 2 (no half-applied migration)", got)
		}
		if err := dbx.Migrate(ctx, db, fstest.MapFS{"nonsense.sql": {Data: []byte("x")}}); err == nil {
			t.Error("a migration file without a version was accepted")
		}

		var w widget
		if err := db.WithContext(ctx).Table("widgets").Where("id = ?", "seed").Take(&w).Error; err != nil {
			t.Fatal(err)
		}
		if w.Name != "seeded" || w.CreatedAt.Year() != 2026 {
			t.Errorf("seed row %+v", w)
		}

		if err := sqlDB.Close(); err != nil {
			t.Fatal(err)
		}
		if err := dbx.Ping(ctx, db); err == nil {
			t.Error("Ping succeeded on a closed database")
		}
	})
}

func TestInTxLeavesNoHalfWrittenData(t *testing.T) {
	t.Parallel()
	dbxtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		ctx := context.Background()
		db := open(t, url, dbx.Options{})
		if err := dbx.Migrate(ctx, db, migrations); err != nil {
			t.Fatal(err)
		}
		insert := func(tx *gorm.DB, id string) error {
			return tx.Table("widgets").Create(&widget{ID: id, Name: id, CreatedAt: time.Now()}).Error
		}

		if err := dbx.InTx(ctx, db, func(tx *gorm.DB) error {
			if err := insert(tx, "a"); err != nil {
				return err
			}
			return insert(tx, "b")
		}); err != nil {
			t.Fatalf("commit: %v", err)
		}
		if got := count(t, db, "widgets"); got != 3 {
			t.Fatalf("%d widgets after a committed transaction, want 3", got)
		}

		errBoom := errors.New("boom")
		err := dbx.InTx(ctx, db, func(tx *gorm.DB) error {
			if err := insert(tx, "c"); err != nil {
				return err
			}
			if got := count(t, tx, "widgets"); got != 4 {
				t.Errorf("the transaction does not see its own write: %d", got)
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Errorf("InTx returned %v, want fn's error", err)
		}
		if got := count(t, db, "widgets"); got != 3 {
			t.Errorf("%d widgets after an error, want 3 (rolled back)", got)
		}

		// A failing statement half-way: the first insert is undone too.
		err = dbx.InTx(ctx, db, func(tx *gorm.DB) error {
			if err := insert(tx, "d"); err != nil {
				return err
			}
			return insert(tx, "a") // duplicate key
		})
		if !errors.Is(err, gorm.ErrDuplicatedKey) {
			t.Errorf("duplicate insert: %v, want gorm.ErrDuplicatedKey", err)
		}
		if got := count(t, db, "widgets"); got != 3 {
			t.Errorf("%d widgets after a failed statement, want 3", got)
		}

		func() {
			defer func() {
				if r := recover(); r != "kaboom" {
					t.Errorf("recovered %v, want the panic to propagate", r)
				}
			}()
			_ = dbx.InTx(ctx, db, func(tx *gorm.DB) error {
				if err := insert(tx, "e"); err != nil {
					return err
				}
				panic("kaboom")
			})
		}()
		if got := count(t, db, "widgets"); got != 3 {
			t.Errorf("%d widgets after a panic, want 3 (rolled back)", got)
		}
		// The connection the panic interrupted went back to the pool
		// usable: later transactions work.
		for i := range 8 {
			if err := dbx.InTx(ctx, db, func(tx *gorm.DB) error {
				return insert(tx, "after-"+string(rune('0'+i)))
			}); err != nil {
				t.Fatalf("transaction %d after the panic: %v", i, err)
			}
		}
		if got := count(t, db, "widgets"); got != 11 {
			t.Errorf("%d widgets, want 11", got)
		}

		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := dbx.InTx(cctx, db, func(tx *gorm.DB) error { return insert(tx, "cancelled") }); err == nil {
			t.Error("InTx ran with a cancelled context")
		}
	})
}

// TestConcurrentMigrateOnPostgres: replicas of a new release start
// together and each runs Migrate; the session lock lets one apply the new
// migration while the others wait and then find nothing to do. Without the
// lock every replica sees 0002 pending, sleeps in it alongside the others
// and inserts the seed row: all but one fail on the primary key.
//
// 0001 is applied beforehand because goose retries the creation of its own
// version table after a second, which would serialise a first start by
// accident and hide a missing lock.
func TestConcurrentMigrateOnPostgres(t *testing.T) {
	t.Parallel()
	url := dbxtest.PostgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	first := fstest.MapFS{"0001_widgets.sql": migrations["0001_widgets.sql"]}
	if err := dbx.Migrate(ctx, open(t, url, dbx.Options{}), first); err != nil {
		t.Fatal(err)
	}
	release := fstest.MapFS{
		"0001_widgets.sql": migrations["0001_widgets.sql"],
		"0002_slow.sql": {Data: []byte(`-- +goose Up
SELECT pg_sleep(0.3);
INSERT INTO widgets (id, name, created_at) VALUES ('seed', 'seeded', '2026-01-01 00:00:00');
-- +goose Down
DELETE FROM widgets WHERE id = 'seed';
`)},
	}
	const replicas = 4
	dbs := make([]*gorm.DB, replicas)
	for i := range dbs {
		dbs[i] = open(t, url, dbx.Options{MaxOpenConns: 2})
	}
	start := make(chan struct{})
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() {
			<-start
			errs[i] = dbx.Migrate(ctx, db, release)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	if got := appliedVersions(t, dbs[0]); got != 2 {
		t.Errorf("%d migrations recorded, want 2", got)
	}
	if got := count(t, dbs[0], "widgets"); got != 1 {
		t.Errorf("%d widgets, want the seed once", got)
	}
}

func TestQueriesAreTracedWithoutSQLText(t *testing.T) {
	t.Parallel()
	dbxtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		db := open(t, url, dbx.Options{TracerProvider: tp})
		ctx := context.Background()
		if err := dbx.Migrate(ctx, db, migrations); err != nil {
			t.Fatal(err)
		}
		var w widget
		if err := db.WithContext(ctx).Table("widgets").Where("name = ?", "secret-value").Take(&w).Error; !errors.Is(err, gorm.ErrRecordNotFound) {
			t.Fatalf("got %v, want not found", err)
		}
		var span sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == "db select widgets" {
				span = s
			}
		}
		if span == nil {
			t.Fatalf("no db select widgets span among %d", len(rec.Ended()))
		}
		attrs := map[string]string{}
		for _, a := range span.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
			if strings.Contains(a.Value.String(), "secret-value") {
				t.Errorf("attribute %s carries a query value", a.Key)
			}
		}
		wantSystem := map[string]string{"sqlite": "sqlite", "postgres": "postgresql"}[dbx.Dialect(db)]
		if attrs["db.system.name"] != wantSystem || attrs["db.operation.name"] != "select" || attrs["db.collection.name"] != "widgets" {
			t.Errorf("span attributes %v", attrs)
		}
		if span.Status().Code != 0 {
			t.Errorf("not found is an answer, not an error: status %v", span.Status())
		}
	})
}

// silentServer accepts TCP connections and never says a word: a hung
// database. Open must give up when its context ends.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

func TestOpenRefusesBadURLsClearly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, msg string
	}{
		{"an empty URL", "", "must start with sqlite:// or postgres://"},
		{"another scheme", "mysql://root@127.0.0.1/db", "must start with sqlite:// or postgres://"},
		{"a bare path", filepath.Join(dir, "x.db"), "must start with sqlite:// or postgres://"},
		{"sqlite without a path", "sqlite://", "sqlite URL has no path"},
		{"sqlite under a file", "sqlite://" + filepath.Join(file, "sub", "x.db"), "create database directory"},
		{"postgres with a bad port", "postgres://app:hunter2@127.0.0.1:notaport/db", "postgres"},
		{"postgres with a bad escape", "postgres://app:hunter2@127.0.0.1/db%zz", "postgres"},
		{"postgres nobody listens on", "postgres://app:hunter2@127.0.0.1:1/db?sslmode=disable", "ping postgres database"},
		{"postgres that never answers", "postgres://app:hunter2@" + silentServer(t) + "/db?sslmode=disable", "ping postgres database"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			db, err := dbx.Open(ctx, dbx.Options{URL: tc.url})
			// Generous: the point is that Open ends with its context
			// rather than with the operating system's TCP timeout.
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("Open took %v with a 2s context", d)
			}
			if err == nil {
				if s, err := db.DB(); err == nil {
					_ = s.Close()
				}
				t.Fatalf("Open(%q) succeeded", tc.url)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q echoes the password", err)
			}
		})
	}
}
