package app

import (
	"maps"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/config/configtest"
)

func validEnv(t *testing.T) map[string]string {
	t.Helper()
	env := configtest.Env(t)
	maps.Copy(env, map[string]string{
		"RAMPART_NATS_URL":           "tls://127.0.0.1:14222",
		"RAMPART_UPSTREAM_AUTH_URL":  "https://127.0.0.1:9441",
		"RAMPART_UPSTREAM_USER_URL":  "https://127.0.0.1:9442",
		"RAMPART_UPSTREAM_ORDER_URL": "https://127.0.0.1:9443",
		"RAMPART_JWKS_URL":           "https://127.0.0.1:9441/.well-known/jwks.json",
	})
	return env
}

// TestLoadConfig: each upstream is required and must be https.
func TestLoadConfig(t *testing.T) {
	t.Parallel()
	if _, err := LoadConfig(config.MapLookup(validEnv(t))); err != nil {
		t.Fatalf("valid environment refused: %v", err)
	}
	tests := []struct {
		name, key, value, want string
	}{
		{"a missing upstream is named", "RAMPART_UPSTREAM_USER_URL", "", "RAMPART_UPSTREAM_USER_URL"},
		{"a plain-HTTP upstream is refused", "RAMPART_UPSTREAM_ORDER_URL", "http://127.0.0.1:9443", "RAMPART_UPSTREAM_ORDER_URL"},
		{"a malformed upstream timeout is named", "RAMPART_UPSTREAM_TIMEOUT", "soon", "RAMPART_UPSTREAM_TIMEOUT"},
		{"the JWKS URL is required", "RAMPART_JWKS_URL", "", "RAMPART_JWKS_URL"},
		{"a trusted proxy must be a CIDR", "RAMPART_TRUSTED_PROXIES", "10.0.0.0/8, everyone", "RAMPART_TRUSTED_PROXIES"},
		{"trusting every IPv4 address is refused", "RAMPART_TRUSTED_PROXIES", "10.0.0.0/8, 0.0.0.0/0", "RAMPART_TRUSTED_PROXIES"},
		{"trusting every IPv6 address is refused", "RAMPART_TRUSTED_PROXIES", "::/0", "RAMPART_TRUSTED_PROXIES"},
		{"a rate limit needs a unit", "RAMPART_RATELIMIT_LOGIN", "10", "RAMPART_RATELIMIT_LOGIN"},
		{"a rate limit unit must be s, m or h", "RAMPART_RATELIMIT_ANONYMOUS", "10/d", "RAMPART_RATELIMIT_ANONYMOUS"},
		{"a rate limit burst must be positive", "RAMPART_RATELIMIT_TOKEN", "10/m:0", "RAMPART_RATELIMIT_TOKEN"},
		{"a malformed Redis URL is named", "RAMPART_REDIS_URL", "mysql://x", "RAMPART_REDIS_URL"},
		{"plain Redis off loopback is refused", "RAMPART_REDIS_URL", "redis://cache.internal:6379/0", "RAMPART_REDIS_URL"},
		{"a CORS origin must be an exact origin", "RAMPART_CORS_ORIGINS", "https://app.example/path", "RAMPART_CORS_ORIGINS"},
		{"a wildcard CORS origin is refused", "RAMPART_CORS_ORIGINS", "*", "RAMPART_CORS_ORIGINS"},
		{"the header limit stays under the server's", "RAMPART_MAX_HEADER_BYTES", "1000000", "RAMPART_MAX_HEADER_BYTES"},
		{"a malformed redirect address is named", "RAMPART_HTTP_REDIRECT_ADDR", "port80", "RAMPART_HTTP_REDIRECT_ADDR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv(t)
			if tc.value == "" {
				delete(env, tc.key)
			} else {
				env[tc.key] = tc.value
			}
			_, err := LoadConfig(config.MapLookup(env))
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want+":") {
				t.Fatalf("error %q, want one line naming %s", err, tc.want)
			}
		})
	}
}

// TestLoadConfigReadsEdgeSettings: the edge settings land in Config, and a
// Redis password is never echoed in an error.
func TestLoadConfigReadsEdgeSettings(t *testing.T) {
	t.Parallel()
	env := validEnv(t)
	env["RAMPART_TRUSTED_PROXIES"] = "10.0.0.0/8,192.0.2.1/32"
	env["RAMPART_RATELIMIT_LOGIN"] = "5/m:2"
	env["RAMPART_REDIS_URL"] = "redis://:hunter2@127.0.0.1:6379/0"
	env["RAMPART_CORS_ORIGINS"] = "https://app.example, http://127.0.0.1:3000"
	env["RAMPART_HTTP_REDIRECT_ADDR"] = "127.0.0.1:8080"
	cfg, err := LoadConfig(config.MapLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.TrustedProxies) != 2 || cfg.RateLimits.Login != "5/m:2" || cfg.Redis == nil || cfg.Redis.Password != "hunter2" ||
		len(cfg.CORSOrigins) != 2 || cfg.RedirectAddr != "127.0.0.1:8080" || cfg.RateLimits.Anonymous != DefaultAnonymousLimit {
		t.Fatalf("config %+v", cfg)
	}
	env["RAMPART_REDIS_URL"] = "redis://:hunter2@cache.internal:6379/0"
	if _, err := LoadConfig(config.MapLookup(env)); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want a refusal that does not echo the password", err)
	}
}

// TestTuneGCLeavesAnExplicitSettingAlone: GOGC or GOMEMLIMIT in the
// environment keep the runtime's setting; otherwise the default applies.
func TestTuneGCLeavesAnExplicitSettingAlone(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	if got := TuneGC(env("GOGC", "100")); got != -1 {
		t.Errorf("GOGC set: %d", got)
	}
	if got := TuneGC(env("GOMEMLIMIT", "512MiB")); got != -1 {
		t.Errorf("GOMEMLIMIT set: %d", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent changed to %d with the environment set", got)
	}
	if got := TuneGC(env()); got != DefaultGCPercent || debug.SetGCPercent(100) != DefaultGCPercent {
		t.Errorf("default not applied: %d", got)
	}
}
