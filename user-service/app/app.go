// Package app wires the user service together. It is the one exported
// package of the service because devstack and the end-to-end tests run it
// through Run.
package app

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/shared/revocation"
	"github.com/rampart-go/rampart/shared/service"
	"github.com/rampart-go/rampart/shared/tokens"
	"github.com/rampart-go/rampart/user-service/internal/events"
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

	// Revoked tokens are refused here too, not only at the gateway: a
	// request that reaches us some other way meets the same deny-list.
	revs, err := revocation.Open(ctx, revocation.Options{JS: rt.JS, NATS: rt.NATS, Logger: rt.Log})
	if err != nil {
		return err
	}
	rt.AddWorker(revs.Run)
	rt.AddCheck(service.ReadyCheck("revocations", revs.Ready))

	public, jwks, err := rt.Verifier(cfg.Tokens, revs)
	if err != nil {
		return err
	}
	// Tokens other services present on /internal are minted for us alone.
	internal, err := tokens.NewVerifier(tokens.Options{
		Issuer: cfg.Tokens.Issuer, Audience: Name, Keys: jwks, Revocations: revs,
	})
	if err != nil {
		return fmt.Errorf("internal token verifier: %w", err)
	}

	relay, err := outbox.NewRelay(outbox.Options{
		DB: rt.DB, Publisher: rt.Publisher, Logger: rt.Log, Registerer: rt.Telemetry.Registry,
		Propagator: rt.Telemetry.Propagator,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(relay.Run)
	profiles := store.New(rt.DB, relay.Notify)

	accounts, err := consumer.New(ctx, consumer.Options{
		JS: rt.JS, Name: events.AccountCreated, Subjects: []string{events.AccountCreatedSubject},
		Handle: events.OnAccountCreated(profiles, rt.Log), Logger: rt.Log,
		TracerProvider: rt.Telemetry.TracerProvider, Propagator: rt.Telemetry.Propagator,
		Registerer: rt.Telemetry.Registry,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(accounts.Run)
	rt.AddCheck(service.ReadyCheck("consumer", accounts.Ready))

	// Retention: processed_events outlive the stream's redeliveries by a
	// day (the relay prunes the outbox itself).
	processed, err := consumer.NewPruner(consumer.PrunerOptions{
		DB: rt.DB, Logger: rt.Log, Registerer: rt.Telemetry.Registry,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(processed.Run)

	engine, err := rt.Engine()
	if err != nil {
		return err
	}
	httpapi.Routes(engine, httpapi.Deps{Profiles: profiles, Verifier: public, Internal: internal, Events: rt.Events})
	return rt.Serve(ctx, engine)
}
