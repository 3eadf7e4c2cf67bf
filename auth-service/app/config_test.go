package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/shared/config"
)

func validEnv(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"c.crt", "c.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]string{
		"RAMPART_PUBLIC_URL":   "https://127.0.0.1:8443",
		"RAMPART_TLS_CERT":     filepath.Join(dir, "c.crt"),
		"RAMPART_TLS_KEY":      filepath.Join(dir, "c.key"),
		"RAMPART_TLS_CA":       filepath.Join(dir, "ca.crt"),
		"RAMPART_NATS_URL":     "tls://127.0.0.1:14222",
		"RAMPART_DATABASE_URL": "sqlite://" + filepath.Join(dir, "auth.db"),
	}
}

// TestAccessTokenLifetimeIsCapped: at most 15 minutes, even with
// RAMPART_INSECURE_DEV=1 — a longer token would outlive the revocation
// records (16 minutes) that deny it, so a revocation would lapse.
func TestAccessTokenLifetimeIsCapped(t *testing.T) {
	t.Parallel()
	env := validEnv(t)
	cfg, err := LoadConfig(config.MapLookup(env))
	if err != nil || cfg.AccessTokenTTL != 10*time.Minute {
		t.Fatalf("defaults: %v, TTL %s", err, cfg.AccessTokenTTL)
	}
	env["RAMPART_ACCESS_TOKEN_TTL"] = "15m"
	if cfg, err := LoadConfig(config.MapLookup(env)); err != nil || cfg.AccessTokenTTL != MaxAccessTokenTTL {
		t.Fatalf("15m: %v, TTL %s", err, cfg.AccessTokenTTL)
	}
	for _, insecure := range []string{"0", "1"} {
		env["RAMPART_INSECURE_DEV"] = insecure
		env["RAMPART_ACCESS_TOKEN_TTL"] = "1h"
		if _, err := LoadConfig(config.MapLookup(env)); err == nil || !strings.Contains(err.Error(), "RAMPART_ACCESS_TOKEN_TTL") {
			t.Errorf("1h with RAMPART_INSECURE_DEV=%s: %v, want RAMPART_ACCESS_TOKEN_TTL refused", insecure, err)
		}
	}
}
