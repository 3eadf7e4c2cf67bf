package stack_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/audit"
)

// TestStackAuditTrailRecordsSecurityEvents: with Options.Audit, a refusal
// at the gateway ends up in DIR/data/audit.db, in an intact chain, written
// by the ops NATS user (read-only on the streams).
func TestStackAuditTrailRecordsSecurityEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack: skipped with -short")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := stack.Start(ctx, stack.Options{Dir: dir, Ephemeral: true, LogWriter: io.Discard, Audit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		s.Wait()
		if err := s.Err(); err != nil {
			t.Errorf("stack stopped with error: %v", err)
		}
	}()

	client, err := s.HTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	// No token: the gateway refuses and emits token.rejected/missing.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoints.Gateway+"/api/v1/users/me", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /api/v1/users/me without a token: %d", resp.StatusCode)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		if db, err := audit.OpenExisting(ctx, stack.AuditDatabaseURL(dir)); err == nil {
			entries, err := audit.Tail(ctx, db, audit.Filter{Type: "token.rejected", Service: stack.Gateway})
			rep, verr := audit.Verify(ctx, db)
			if sqlDB, err := db.DB(); err == nil {
				_ = sqlDB.Close()
			}
			if err == nil && verr == nil && len(entries) > 0 {
				if entries[0].Reason != "missing" || !rep.OK() {
					t.Fatalf("entry %+v, chain %+v", entries[0], rep)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no token.rejected entry in the audit trail")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
