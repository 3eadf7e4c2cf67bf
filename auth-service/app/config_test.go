package app

import (
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/config/configtest"
)

// TestAccessTokenLifetimeIsCapped: at most 15 minutes, even with
// RAMPART_INSECURE_DEV=1 — a longer token would outlive the revocation
// records (16 minutes) that deny it, so a revocation would lapse.
func TestAccessTokenLifetimeIsCapped(t *testing.T) {
	t.Parallel()
	env := configtest.Env(t)
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
