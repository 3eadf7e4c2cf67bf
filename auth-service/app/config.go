package app

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"time"

	"github.com/rampart-go/rampart/auth-service/internal/password"
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/jsonx"
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
	// BootstrapAdminEmail and BootstrapAdminPassword create the first
	// admin on start when no account has that email
	// (RAMPART_BOOTSTRAP_ADMIN_EMAIL, RAMPART_BOOTSTRAP_ADMIN_PASSWORD).
	BootstrapAdminEmail, BootstrapAdminPassword string
	// SeedFile is a credentials.json (CONTRACT §1) whose accounts are
	// created and whose confidential client secret is registered
	// (RAMPART_SEED_FILE; devstack and compose's init write it).
	SeedFile string
	// Argon2 are the password-hash costs (RAMPART_ARGON2_MEMORY_KIB,
	// RAMPART_ARGON2_TIME, RAMPART_ARGON2_THREADS).
	Argon2 password.Params
	// RefreshIdleTTL, RefreshMaxTTL and SessionTTL (RAMPART_REFRESH_IDLE_TTL,
	// RAMPART_REFRESH_MAX_TTL, RAMPART_SESSION_TTL).
	RefreshIdleTTL, RefreshMaxTTL, SessionTTL time.Duration
	// AuthRatePerMinute and AuthRateBurst limit login and token requests per
	// client address at the auth service itself (RAMPART_AUTH_RATE_PER_MINUTE,
	// RAMPART_AUTH_RATE_BURST; defaults 60 and 20).
	AuthRatePerMinute, AuthRateBurst int
	// ServiceRatePerMinute and ServiceRateBurst limit token requests per
	// calling service (order-service's token exchanges), keyed on its
	// certificate identity (RAMPART_AUTH_SERVICE_RATE_PER_MINUTE,
	// RAMPART_AUTH_SERVICE_RATE_BURST; defaults 6000 and 1000).
	ServiceRatePerMinute, ServiceRateBurst int
	// Runtime holds what tests and devstack inject.
	Runtime service.Overrides
}

// MaxAccessTokenTTL is the longest access-token lifetime the contract allows;
// retired signing keys stay published, and revocation records kept, at
// least this long.
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
	// Not even RAMPART_INSECURE_DEV=1 allows longer: revocation records
	// (natsx.RevocationTTL) and retired signing keys live just past 15
	// minutes, so a longer-lived token would outlive its own revocation.
	cfg.AccessTokenTTL = r.Duration("RAMPART_ACCESS_TOKEN_TTL", 10*time.Minute, time.Minute, MaxAccessTokenTTL)
	cfg.BootstrapAdminEmail = r.String("RAMPART_BOOTSTRAP_ADMIN_EMAIL", "")
	cfg.BootstrapAdminPassword = r.String("RAMPART_BOOTSTRAP_ADMIN_PASSWORD", "")
	if (cfg.BootstrapAdminEmail == "") != (cfg.BootstrapAdminPassword == "") {
		r.Fail("RAMPART_BOOTSTRAP_ADMIN_PASSWORD", "set both RAMPART_BOOTSTRAP_ADMIN_EMAIL and RAMPART_BOOTSTRAP_ADMIN_PASSWORD, or neither")
	}
	if cfg.BootstrapAdminPassword != "" {
		if p := password.Check(cfg.BootstrapAdminPassword); p != "" {
			r.Fail("RAMPART_BOOTSTRAP_ADMIN_PASSWORD", "the password "+string(p))
		}
	}
	cfg.SeedFile = r.String("RAMPART_SEED_FILE", "")
	mem := r.Int("RAMPART_ARGON2_MEMORY_KIB", int(password.DefaultParams.MemoryKiB), 8*1024, 4<<20)
	t := r.Int("RAMPART_ARGON2_TIME", int(password.DefaultParams.Time), 1, 16)
	th := r.Int("RAMPART_ARGON2_THREADS", int(password.DefaultParams.Threads), 1, 16)
	cfg.Argon2 = password.Params{MemoryKiB: uint32(mem), Time: uint32(t), Threads: uint8(th)} //nolint:gosec // bounded above
	cfg.RefreshIdleTTL = r.Duration("RAMPART_REFRESH_IDLE_TTL", 24*time.Hour, time.Minute, 90*24*time.Hour)
	cfg.RefreshMaxTTL = r.Duration("RAMPART_REFRESH_MAX_TTL", 30*24*time.Hour, time.Hour, 365*24*time.Hour)
	cfg.SessionTTL = r.Duration("RAMPART_SESSION_TTL", 8*time.Hour, time.Minute, 30*24*time.Hour)
	cfg.AuthRatePerMinute = r.Int("RAMPART_AUTH_RATE_PER_MINUTE", 60, 1, 1_000_000)
	cfg.AuthRateBurst = r.Int("RAMPART_AUTH_RATE_BURST", 20, 1, 1_000_000)
	cfg.ServiceRatePerMinute = r.Int("RAMPART_AUTH_SERVICE_RATE_PER_MINUTE", 6000, 1, 10_000_000)
	cfg.ServiceRateBurst = r.Int("RAMPART_AUTH_SERVICE_RATE_BURST", 1000, 1, 1_000_000)
	return cfg, r.Err()
}

// Credentials is the credentials.json format of CONTRACT §1.
type Credentials struct {
	Accounts map[string]CredentialAccount `json:"accounts"`
	Clients  []CredentialClient           `json:"clients"`
}

// CredentialAccount is one seeded account.
type CredentialAccount struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// CredentialClient is one registered client as handed to its user.
type CredentialClient struct {
	ClientID     string   `json:"client_id"`
	Type         string   `json:"type"`
	ClientSecret string   `json:"client_secret,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
}

func readCredentials(path string) (Credentials, error) {
	var c Credentials
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path) //nolint:gosec // G304: the path is operator configuration (RAMPART_SEED_FILE)
	if err != nil {
		return c, fmt.Errorf("seed file: %w", err)
	}
	if err := jsonx.Decode(bytes.NewReader(b), &c); err != nil {
		return c, fmt.Errorf("seed file %s: %w", path, err)
	}
	return c, nil
}
