// Package app wires the auth service together. It is the one exported
// package of the service because devstack and the end-to-end tests run it
// through Run.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-go/rampart/auth-service/internal/account"
	"github.com/rampart-go/rampart/auth-service/internal/events"
	"github.com/rampart-go/rampart/auth-service/internal/httpapi"
	"github.com/rampart-go/rampart/auth-service/internal/keys"
	"github.com/rampart-go/rampart/auth-service/internal/oauth"
	"github.com/rampart-go/rampart/auth-service/internal/password"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/revocation"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/service"
)

// Version is stamped at build time.
var Version = "dev"

// Run starts the auth service and blocks until ctx is cancelled or
// SIGINT/SIGTERM arrives, then drains and stops. SIGHUP forces a
// signing-key rotation.
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
	rt.AddWorker(func(ctx context.Context) { rotateOnSIGHUP(ctx, km, rt.Log) })

	revs, err := revocation.Open(ctx, revocation.Options{JS: rt.JS, NATS: rt.NATS, Logger: rt.Log})
	if err != nil {
		return err
	}
	rt.AddWorker(revs.Run)
	rt.AddCheck(service.ReadyCheck("revocations", revs.Ready))

	relay, err := outbox.NewRelay(outbox.Options{
		DB: rt.DB, Publisher: rt.Publisher, Logger: rt.Log, Registerer: rt.Telemetry.Registry,
		Propagator: rt.Telemetry.Propagator,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(relay.Run)

	if cfg.Argon2 == (password.Params{}) {
		cfg.Argon2 = password.DefaultParams
	}
	hasher, err := password.NewHasher(cfg.Argon2)
	if err != nil {
		return err
	}
	accounts := account.New(rt.DB, hasher, relay.Notify)
	if err := seed(ctx, cfg, rt, accounts); err != nil {
		return err
	}

	// The auth service's own throttles name their ratelimit.exceeded
	// events after the endpoint; their series exist at 0 from the start.
	rt.Events.Expect(secevent.RateLimitExceeded, "login", "token")
	srv, err := oauth.New(oauth.Config{
		Issuer: cfg.PublicURL.String(), AccessTokenTTL: cfg.AccessTokenTTL,
		RefreshIdleTTL: cfg.RefreshIdleTTL, RefreshMaxTTL: cfg.RefreshMaxTTL, SessionTTL: cfg.SessionTTL,
		Throttle: oauth.ThrottleOptions{PerMinute: cfg.AuthRatePerMinute, Burst: cfg.AuthRateBurst},
		ServiceThrottle: oauth.ThrottleOptions{
			PerMinute: cfg.ServiceRatePerMinute, Burst: cfg.ServiceRateBurst,
		},
	}, oauth.Deps{DB: rt.DB, Keys: km, Accounts: accounts, Revocations: revs, Events: rt.Events, Logger: rt.Log,
		Registerer: rt.Telemetry.Registry,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(srv.RunSweeper)

	// Erasure: user-service's user.deleted disables the account and revokes
	// every token of the user.
	erasures, err := consumer.New(ctx, consumer.Options{
		JS: rt.JS, Name: events.UserDeleted, Subjects: []string{events.UserDeletedSubject},
		Handle: events.OnUserDeleted(accounts, srv, rt.Events, rt.Log), Logger: rt.Log,
		TracerProvider: rt.Telemetry.TracerProvider, Propagator: rt.Telemetry.Propagator,
		Registerer: rt.Telemetry.Registry,
	})
	if err != nil {
		return err
	}
	rt.AddWorker(erasures.Run)
	rt.AddCheck(service.ReadyCheck("consumer", erasures.Ready))

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
	httpapi.Routes(engine, httpapi.Deps{
		JWKS: km.Handler(), OAuth: srv, Accounts: accounts, Events: rt.Events, RotateKeys: km.Rotate,
	})
	return rt.Serve(ctx, engine)
}

// seed registers the clients and creates the bootstrap admin and the seed
// file's accounts, idempotently.
func seed(ctx context.Context, cfg Config, rt *service.Runtime, accounts *account.Service) error {
	creds, err := readCredentials(cfg.SeedFile)
	if err != nil {
		return err
	}
	machineSecret := ""
	for _, c := range creds.Clients {
		if c.ClientID == oauth.MachineClientID {
			machineSecret = c.ClientSecret
		}
	}
	if err := oauth.RegisterClients(ctx, rt.DB, oauth.DefaultClients(machineSecret)); err != nil {
		return fmt.Errorf("register clients: %w", err)
	}
	type seedAccount struct{ email, password, name, role string }
	var want []seedAccount
	if cfg.BootstrapAdminEmail != "" {
		want = append(want, seedAccount{cfg.BootstrapAdminEmail, cfg.BootstrapAdminPassword, "Administrator", policy.RoleAdmin})
	}
	roles := map[string]string{"admin": policy.RoleAdmin, "manager": policy.RoleManager, "user": policy.RoleUser}
	for _, key := range []string{"admin", "manager", "user"} {
		if a, ok := creds.Accounts[key]; ok {
			want = append(want, seedAccount{a.Email, a.Password, "Demo " + key, roles[key]})
		}
	}
	for _, a := range want {
		acct, created, err := accounts.Seed(ctx, a.email, a.password, a.name, []string{a.role})
		if err != nil {
			return fmt.Errorf("seed account %s: %w", a.email, err)
		}
		if created {
			rt.Log.Info("seeded account", slog.String("id", acct.ID), slog.String("role", a.role))
		}
	}
	return nil
}

func rotateOnSIGHUP(ctx context.Context, km *keys.Manager, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			if err := km.Rotate(); err != nil {
				log.Error("forced key rotation failed", slog.Any("error", err))
			}
		}
	}
}
