package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		"RAMPART_PUBLIC_URL":         "https://127.0.0.1:8443",
		"RAMPART_TLS_CERT":           filepath.Join(dir, "c.crt"),
		"RAMPART_TLS_KEY":            filepath.Join(dir, "c.key"),
		"RAMPART_TLS_CA":             filepath.Join(dir, "ca.crt"),
		"RAMPART_NATS_URL":           "tls://127.0.0.1:14222",
		"RAMPART_UPSTREAM_AUTH_URL":  "https://127.0.0.1:9441",
		"RAMPART_UPSTREAM_USER_URL":  "https://127.0.0.1:9442",
		"RAMPART_UPSTREAM_ORDER_URL": "https://127.0.0.1:9443",
	}
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
