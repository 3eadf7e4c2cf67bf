package app

import (
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/service"
)

// Name is the service's identity: its certificate's SPIFFE id ends in it.
const Name = "order-service"

// Config is everything Run needs. LoadConfig fills it from RAMPART_*
// variables; devstack and tests build it directly.
type Config struct {
	config.Common
	// Runtime holds what tests and devstack inject (listeners, span
	// recorders); never read from the environment.
	Runtime service.Overrides
}

// LoadConfig reads and validates the environment, reporting every problem
// at once, one line per variable.
func LoadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	cfg := Config{Common: config.ReadCommon(r, Name, "127.0.0.1:9443", "127.0.0.1:9184", true)}
	return cfg, r.Err()
}
