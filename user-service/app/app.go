// Package app wires the user service together. It is the one exported
// package of the service because devstack and the end-to-end tests run it
// through Run.
package app

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/shared/service"
	"github.com/rampart-go/rampart/user-service/internal/httpapi"
	"github.com/rampart-go/rampart/user-service/internal/store"
)

// Version is stamped at build time.
var Version = "dev"

// Run starts the user service and blocks until ctx is cancelled or
// SIGINT/SIGTERM arrives, then drains and stops.
func Run(ctx context.Context, cfg Config) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rt, err := service.New(ctx, service.Options{
		Common: cfg.Common, Version: Version, Overrides: cfg.Runtime, Migrations: store.Migrations,
	})
	if err != nil {
		return err
	}
	verifier, _, err := rt.Verifier(cfg.Tokens, nil)
	if err != nil {
		return err
	}

	engine, err := rt.Engine()
	if err != nil {
		return err
	}
	httpapi.Routes(engine, httpapi.Deps{Profiles: store.New(rt.DB), Verifier: verifier, Events: rt.Events})
	return rt.Serve(ctx, engine)
}
