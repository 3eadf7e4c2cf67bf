package app

import (
	"net/url"
	"time"

	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/service"
)

// Name is the gateway's service identity.
const Name = "gateway"

// Config is everything Run needs.
type Config struct {
	config.Common
	// Upstreams maps a service name to its mTLS API base URL
	// (RAMPART_UPSTREAM_AUTH_URL, _USER_URL, _ORDER_URL).
	Upstreams map[string]*url.URL
	// UpstreamTimeout bounds one upstream exchange up to its response
	// headers (RAMPART_UPSTREAM_TIMEOUT).
	UpstreamTimeout time.Duration
	// Runtime holds what tests and devstack inject.
	Runtime service.Overrides
}

// Upstream service names, as in their certificates.
const (
	AuthService  = "auth-service"
	UserService  = "user-service"
	OrderService = "order-service"
)

// LoadConfig reads and validates the environment, reporting every problem at once.
func LoadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	cfg := Config{
		Common:    config.ReadCommon(r, Name, "127.0.0.1:8443", "127.0.0.1:9181", false),
		Upstreams: map[string]*url.URL{},
	}
	for name, env := range map[string]string{
		AuthService:  "RAMPART_UPSTREAM_AUTH_URL",
		UserService:  "RAMPART_UPSTREAM_USER_URL",
		OrderService: "RAMPART_UPSTREAM_ORDER_URL",
	} {
		u := r.URL(env, "", "https")
		if u == nil {
			r.Fail(env, "required (https URL of the "+name+" API)")
			continue
		}
		cfg.Upstreams[name] = u
	}
	cfg.UpstreamTimeout = r.Duration("RAMPART_UPSTREAM_TIMEOUT", 15*time.Second, 100*time.Millisecond, 2*time.Minute)
	return cfg, r.Err()
}
