package composetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rampart-go/rampart/deploy/stack"
)

// scratchPostgres runs deploy/compose/postgres/init-databases.sh against
// RAMPART_TEST_POSTGRES_DSN under a random prefix and drops what it made
// afterwards. It returns the admin URL, the prefix and the state dir.
func scratchPostgres(t *testing.T) (admin *url.URL, prefix, state string) {
	t.Helper()
	dsn := os.Getenv("RAMPART_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("RAMPART_TEST_POSTGRES_DSN is not set")
	}
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql is not installed")
	}
	admin, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix = "rt" + hex.EncodeToString(b[:]) + "_"
	state = t.TempDir()
	if err := stack.Prepare(state, stack.PrepareOptions{Compose: true}); err != nil {
		t.Fatal(err)
	}
	run := func() {
		cmd := exec.Command("sh", filepath.Join(repoRoot(t), "deploy", "compose", "postgres", "init-databases.sh"))
		pw, _ := admin.User.Password()
		q := admin.Query()
		cmd.Env = append(os.Environ(),
			"INIT_PASSWORDS_DIR="+filepath.Join(stack.ComposeDir(state, "postgres"), "passwords"),
			"INIT_NAME_PREFIX="+prefix,
			"PGHOST="+admin.Hostname(), "PGPORT="+admin.Port(), "PGUSER="+admin.User.Username(), "PGPASSWORD="+pw,
			"PGDATABASE="+admin.Path[1:], "PGSSLMODE="+q.Get("sslmode"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("init-databases.sh: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, name := range stack.DatabaseServices {
			role := stack.PostgresRole(prefix, name)
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{role}.Sanitize()+" WITH (FORCE)")
			_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
		}
	})
	run()
	run() // idempotent: a second run changes nothing and fails on nothing
	return admin, prefix, state
}

// TestPostgresInitScript: each service's role reaches its own database with
// its generated password and nothing else.
func TestPostgresInitScript(t *testing.T) {
	admin, prefix, state := scratchPostgres(t)
	ctx := context.Background()
	base := &url.URL{Scheme: "postgres", Host: admin.Host, Path: "/", RawQuery: admin.RawQuery}
	connect := func(role, db, passfile string) (*pgx.Conn, error) {
		dsn, err := stack.PostgresDSN(base.String(), prefix, role, passfile)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(dsn)
		u.Path = "/" + stack.PostgresRole(prefix, db)
		return pgx.Connect(ctx, u.String())
	}
	for _, own := range stack.DatabaseServices {
		// The compose pgpass names the unprefixed role: write the prefixed one.
		sec := filepath.Join(t.TempDir(), "pgpass")
		pw, err := os.ReadFile(filepath.Join(stack.ComposeDir(state, "postgres"), "passwords", own))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sec, []byte(stack.PgpassLine(prefix, own, string(pw))), 0o600); err != nil {
			t.Fatal(err)
		}
		conn, err := connect(own, own, sec)
		if err != nil {
			t.Fatalf("%s cannot connect to its own database: %v", own, err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE t_probe (id int primary key); INSERT INTO t_probe VALUES (1)"); err != nil {
			t.Errorf("%s cannot create tables in its own database: %v", own, err)
		}
		var super, createdb, createrole bool
		if err := conn.QueryRow(ctx, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&super, &createdb, &createrole); err != nil {
			t.Fatal(err)
		}
		if super || createdb || createrole {
			t.Errorf("%s is not least-privileged: super=%v createdb=%v createrole=%v", own, super, createdb, createrole)
		}
		conn.Close(ctx)
		for _, other := range stack.DatabaseServices {
			if other == own {
				continue
			}
			if c, err := connect(own, other, sec); err == nil {
				c.Close(ctx)
				t.Errorf("%s's role connected to %s's database", own, other)
			}
		}
	}
}
