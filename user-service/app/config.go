package app

import (
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/service"
)

// Name is the user service's identity.
const Name = "user-service"

// Config is everything Run needs.
type Config struct {
	config.Common
	// Tokens locates the JWKS and fixes the expected issuer and audience.
	Tokens service.TokenConfig
	// Runtime holds what tests and devstack inject.
	Runtime service.Overrides
}

// LoadConfig reads and validates the environment, reporting every problem at once.
func LoadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	cfg := Config{Common: config.ReadCommon(r, Name, "127.0.0.1:9442", "127.0.0.1:9183", true)}
	cfg.Tokens = service.ReadTokenConfig(r, cfg.Common)
	return cfg, r.Err()
}
