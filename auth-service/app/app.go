// Package app wires the auth service together. It is the one exported
// package of the service because devstack and the end-to-end tests run it
// through Run.
package app

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/auth-service/internal/httpapi"
	"github.com/rampart-go/rampart/auth-service/internal/keys"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/service"
)

// Version is stamped at build time.
var Version = "dev"

// Run starts the auth service and blocks until ctx is cancelled or
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
	km, err := keys.Open(keys.Options{
		Dir: cfg.KeysDir, EncryptionKey: cfg.KeyEncryptionKey, RotateEvery: cfg.KeyRotation,
		MaxTokenLifetime: MaxAccessTokenTTL, Logger: rt.Log,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(km.Run)

	engine, err := rt.Engine()
	if err != nil {
		return err
	}
	httpapi.Routes(engine, httpapi.Deps{JWKS: km.Handler()})
	return rt.Serve(ctx, engine)
}
