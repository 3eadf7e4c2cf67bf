package app

import (
	"encoding/base64"
	"time"

	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/service"
)

// Name is the auth service's identity.
const Name = "auth-service"

// Config is everything Run needs.
type Config struct {
	config.Common
	// KeysDir holds the signing keys (RAMPART_KEYS_DIR), created 0700.
	KeysDir string
	// KeyEncryptionKey, 32 bytes given base64-encoded in
	// RAMPART_KEY_ENCRYPTION_KEY, encrypts signing keys at rest. Without it
	// keys are plain PEM files with mode 0600.
	KeyEncryptionKey []byte
	// KeyRotation is the signing-key rotation period (RAMPART_KEY_ROTATION).
	KeyRotation time.Duration
	// AccessTokenTTL is the access-token lifetime (RAMPART_ACCESS_TOKEN_TTL):
	// 10 minutes by default; over 15 minutes is refused (CONTRACT §3).
	AccessTokenTTL time.Duration
	// Runtime holds what tests and devstack inject.
	Runtime service.Overrides
}

// MaxAccessTokenTTL is the longest access-token lifetime the contract allows;
// retired signing keys stay published at least this long.
const MaxAccessTokenTTL = 15 * time.Minute

// LoadConfig reads and validates the environment, reporting every problem at once.
func LoadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	cfg := Config{Common: config.ReadCommon(r, Name, "127.0.0.1:9441", "127.0.0.1:9182", true)}
	cfg.KeysDir = r.String("RAMPART_KEYS_DIR", "keys")
	if kek := r.String("RAMPART_KEY_ENCRYPTION_KEY", ""); kek != "" {
		b, err := base64.StdEncoding.DecodeString(kek)
		if err != nil || len(b) != 32 {
			r.Fail("RAMPART_KEY_ENCRYPTION_KEY", "must be 32 bytes, base64-encoded")
		}
		cfg.KeyEncryptionKey = b
	}
	cfg.KeyRotation = r.Duration("RAMPART_KEY_ROTATION", 24*time.Hour, time.Hour, 90*24*time.Hour)
	cfg.AccessTokenTTL = r.Duration("RAMPART_ACCESS_TOKEN_TTL", 10*time.Minute, time.Minute, 24*time.Hour)
	r.Insecure("RAMPART_ACCESS_TOKEN_TTL", cfg.AccessTokenTTL > MaxAccessTokenTTL, "access-token lifetime over 15 minutes")
	return cfg, r.Err()
}
