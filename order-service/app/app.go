// Package app wires the order service together. It is the one exported
// package of the service (everything else is internal) because devstack and
// the end-to-end tests, in the deploy module, run the service through Run
// exactly as main does.
package app

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/order-service/internal/httpapi"
	"github.com/rampart-go/rampart/order-service/internal/store"
	"github.com/rampart-go/rampart/shared/service"
)

// Version is stamped at build time (-ldflags "-X ...app.Version=...").
var Version = "dev"

// Run starts the order service and blocks until ctx is cancelled or SIGINT /
// SIGTERM arrives, then shuts down gracefully. It returns an error if a
// dependency cannot be reached at start or a listener fails.
func Run(ctx context.Context, cfg Config) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rt, err := service.New(ctx, service.Options{
		Common: cfg.Common, Version: Version, Overrides: cfg.Runtime, Migrations: store.Migrations,
	})
	if err != nil {
		return err
	}
	st := store.New(rt.DB, nil)

	engine, err := rt.Engine()
	if err != nil {
		return err
	}
	httpapi.Routes(engine, httpapi.Deps{Catalog: st})
	return rt.Serve(ctx, engine)
}
