// Package configtest gives configuration tests their starting point: an
// environment every service's configuration accepts, to which each test
// adds or changes the variables it is about.
package configtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Env returns a valid environment for config.ReadCommon and the services'
// LoadConfig: a public URL, certificate, key and CA files (placeholders in
// a temporary directory: configuration only checks that they are
// readable), a SQLite database URL and a TLS NATS URL.
func Env(t testing.TB) map[string]string {
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
		"RAMPART_DATABASE_URL": "sqlite://" + filepath.Join(dir, "service.db"),
		"RAMPART_NATS_URL":     "tls://nats.internal:4222",
	}
}
