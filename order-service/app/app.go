// Package app wires the order service together. It is the one exported
// package of the service (everything else is internal) because devstack and
// the end-to-end tests, in the deploy module, run the service through Run
// exactly as main does.
package app

import (
	"context"
	"errors"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/order-service/internal/events"
	"github.com/rampart-go/rampart/order-service/internal/httpapi"
	"github.com/rampart-go/rampart/order-service/internal/store"
	"github.com/rampart-go/rampart/order-service/internal/userclient"
	"github.com/rampart-go/rampart/shared/breaker"
	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/shared/revocation"
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
	if cfg.UserURL == nil || cfg.AuthURL == nil {
		return errors.New("order-service: the user- and auth-service URLs are required")
	}

	rt, err := service.New(ctx, service.Options{
		Common: cfg.Common, Version: Version, Overrides: cfg.Runtime, Migrations: store.Migrations,
	})
	if err != nil {
		return err
	}

	// Revoked tokens are refused here too, not only at the gateway.
	revs, err := revocation.Open(ctx, revocation.Options{JS: rt.JS, NATS: rt.NATS, Logger: rt.Log})
	if err != nil {
		return err
	}
	rt.AddWorker(revs.Run)
	rt.AddCheck(service.ReadyCheck("revocations", revs.Ready))
	verifier, _, err := rt.Verifier(cfg.Tokens, revs)
	if err != nil {
		return err
	}

	relay, err := outbox.NewRelay(outbox.Options{
		DB: rt.DB, Publisher: rt.Publisher, Logger: rt.Log, Registerer: rt.Telemetry.Registry,
		Propagator: rt.Telemetry.Propagator,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(relay.Run)
	orders := store.New(rt.DB, relay.Notify)

	// The last step of the erasure saga: a durable consumer, so an erasure
	// published while we are down is applied when we are back.
	erasures, err := consumer.New(ctx, consumer.Options{
		JS: rt.JS, Name: events.UserDeleted, Subjects: []string{events.UserDeletedSubject},
		Handle: events.OnUserDeleted(orders, rt.Log), Logger: rt.Log,
		TracerProvider: rt.Telemetry.TracerProvider, Propagator: rt.Telemetry.Propagator,
		Registerer: rt.Telemetry.Registry,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(erasures.Run)
	rt.AddCheck(service.ReadyCheck("consumer", erasures.Ready))

	// Retention: processed_events outlive the stream's redeliveries by a
	// day, idempotency keys their 24-hour window (the relay prunes the
	// outbox itself).
	processed, err := consumer.NewPruner(consumer.PrunerOptions{
		DB: rt.DB, Logger: rt.Log, Registerer: rt.Telemetry.Registry,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(processed.Run)
	rt.AddWorker(func(ctx context.Context) { orders.RunPruner(ctx, rt.Log) })

	customers, err := userclient.New(userclient.Options{
		Users:      rt.Client("user-service", cfg.UserTimeout),
		Auth:       rt.Client("auth-service", cfg.UserTimeout),
		UserURL:    cfg.UserURL,
		TokenURL:   cfg.AuthURL.JoinPath("/oauth2/token"),
		ClientID:   Name,
		Timeout:    cfg.UserTimeout,
		Breaker:    breaker.Options{Threshold: cfg.BreakerThreshold, OpenFor: cfg.BreakerOpenFor},
		Registerer: rt.Telemetry.Registry,
	})
	if err != nil {
		return err
	}

	engine, err := rt.Engine()
	if err != nil {
		return err
	}
	httpapi.Routes(engine, httpapi.Deps{
		Catalog: orders, Orders: orders, Customers: customers, Verifier: verifier, Events: rt.Events,
	})
	return rt.Serve(ctx, engine)
}
