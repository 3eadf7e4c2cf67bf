package app

import (
	"net/url"
	"time"

	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/service"
)

// Name is the service's identity: its certificate's SPIFFE id ends in it.
const Name = "order-service"

// Config is everything Run needs. LoadConfig fills it from RAMPART_*
// variables; devstack and tests build it directly.
type Config struct {
	config.Common
	// Tokens locates the JWKS and fixes the expected issuer and audience.
	Tokens service.TokenConfig
	// UserURL is user-service's mTLS API (RAMPART_UPSTREAM_USER_URL), where
	// a customer is looked up when an order is placed.
	UserURL *url.URL
	// AuthURL is auth-service's mTLS API (RAMPART_UPSTREAM_AUTH_URL), whose
	// token endpoint exchanges a customer's token for one user-service
	// accepts.
	AuthURL *url.URL
	// UserTimeout bounds each call to those two (RAMPART_USER_LOOKUP_TIMEOUT,
	// default 2s): a customer waits at most about twice this for a 503.
	UserTimeout time.Duration
	// BreakerThreshold consecutive failures open the circuit to them for
	// BreakerOpenFor (RAMPART_BREAKER_THRESHOLD, RAMPART_BREAKER_OPEN_FOR,
	// the gateway's variables).
	BreakerThreshold int
	BreakerOpenFor   time.Duration
	// Runtime holds what tests and devstack inject (listeners, span
	// recorders); never read from the environment.
	Runtime service.Overrides
}

// LoadConfig reads and validates the environment, reporting every problem
// at once, one line per variable.
func LoadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	cfg := Config{Common: config.ReadCommon(r, Name, "127.0.0.1:9443", "127.0.0.1:9184", true)}
	cfg.Tokens = service.ReadTokenConfig(r, cfg.Common)
	for env, dst := range map[string]**url.URL{
		"RAMPART_UPSTREAM_USER_URL": &cfg.UserURL,
		"RAMPART_UPSTREAM_AUTH_URL": &cfg.AuthURL,
	} {
		if *dst = r.URL(env, "", "https"); *dst == nil {
			r.Fail(env, "required (https URL of the service's mTLS API)")
		}
	}
	cfg.UserTimeout = r.Duration("RAMPART_USER_LOOKUP_TIMEOUT", 2*time.Second, 100*time.Millisecond, 30*time.Second)
	cfg.BreakerThreshold = r.Int("RAMPART_BREAKER_THRESHOLD", 5, 1, 1000)
	cfg.BreakerOpenFor = r.Duration("RAMPART_BREAKER_OPEN_FOR", 5*time.Second, 100*time.Millisecond, 10*time.Minute)
	return cfg, r.Err()
}
