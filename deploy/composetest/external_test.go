package composetest

import (
	"context"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rampart-go/rampart/deploy/stack"
)

// TestDevstackExternalMode runs the whole stack the way compose does (one
// role and database per service, created by the compose init script; an
// external NATS) against the machine's PostgreSQL and NATS.
func TestDevstackExternalMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	natsURL := os.Getenv("RAMPART_TEST_NATS_URL")
	if natsURL == "" || os.Getenv("RAMPART_TEST_POSTGRES_DSN") == "" {
		t.Skip("RAMPART_TEST_POSTGRES_DSN and RAMPART_TEST_NATS_URL are not both set")
	}
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql is not installed")
	}
	admin, prefix, state := scratchPostgres(t)
	base := &url.URL{Scheme: "postgres", Host: admin.Host, Path: "/", RawQuery: admin.RawQuery}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := stack.Start(ctx, stack.Options{
		Dir: state, Ephemeral: true, LogWriter: io.Discard,
		Postgres: base.String(), PostgresPrefix: prefix, NATSURL: natsURL,
	})
	if err != nil {
		t.Fatalf("stack on external PostgreSQL and NATS: %v", err)
	}
	defer s.Stop()
	if s.NATS != nil || s.Endpoints.NATS != natsURL {
		t.Errorf("NATS endpoint %q, want the external %q", s.Endpoints.NATS, natsURL)
	}
	client, err := s.HTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(s.Endpoints.Gateway + "/api/v1/catalog")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("catalog through the gateway: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(state, "data")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(state, "data"))
		if len(entries) > 0 {
			t.Errorf("external mode wrote SQLite files: %v", entries)
		}
	}
}
