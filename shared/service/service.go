// Package service is the wiring every Rampart service shares, so that each
// service's app.Run reads as a list of its own parts: telemetry, the mTLS
// identity and caller allowlist, NATS and the security-event emitter, the
// database and its migrations, the API and ops listeners, and an orderly
// shutdown. A template user's fifth service starts here.
package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/telemetry"
)

// Overrides are the parts of a service's runtime that a test or devstack
// injects instead of deriving them from configuration. None comes from the
// environment.
type Overrides struct {
	// APIListener and OpsListener, when set, are used instead of binding
	// APIAddr and OpsAddr: devstack binds every socket first so it knows
	// every address before any service starts.
	APIListener, OpsListener net.Listener
	// LogWriter receives the JSON logs (default stderr).
	LogWriter io.Writer
	// SpanProcessors are added to the tracer provider (tests record spans).
	SpanProcessors []sdktrace.SpanProcessor
	// CertReloadInterval is how often certificate files are polled
	// (default 30s; tests use less).
	CertReloadInterval time.Duration
}

// Options describe one service to New.
type Options struct {
	Common    config.Common
	Version   string
	Overrides Overrides
	// Migrations, when set, opens RAMPART_DATABASE_URL and migrates it.
	Migrations fs.FS
	// PublicEdge serves the API listener without client certificates: only
	// the gateway's public listener does this.
	PublicEdge bool
	// MaxBodyBytes is the API body limit (default server.DefaultMaxBodyBytes).
	MaxBodyBytes int64
}

// Runtime is a started service's shared machinery.
type Runtime struct {
	Config    config.Common
	Telemetry *telemetry.Telemetry
	Log       *slog.Logger
	// Certs serves this service's certificate and reloads it from disk.
	Certs *mtls.Reloader
	// Roots is the CA pool that service certificates chain to.
	Roots *x509.CertPool
	NATS  *nats.Conn
	JS    jetstream.JetStream
	// Publisher publishes CloudEvents to JetStream with trace context.
	Publisher *natsx.Publisher
	// Events is the security-event emitter: metric, span event, stream.
	Events *secevent.Emitter
	// DB is nil for services without a database.
	DB      *gorm.DB
	Metrics *server.Metrics

	opts    Options
	checks  []server.Check
	workers []func(context.Context)
	closers []func(context.Context)
}

// New starts the shared parts of a service. On error, whatever was started
// is stopped again.
func New(ctx context.Context, o Options) (rt *Runtime, err error) {
	c := o.Common
	tel, err := telemetry.New(ctx, telemetry.Options{
		Service: c.Service, Version: o.Version, LogLevel: c.LogLevel,
		LogWriter: o.Overrides.LogWriter, OTLPEndpoint: c.OTLPEndpoint,
		SpanProcessors: o.Overrides.SpanProcessors,
	})
	if err != nil {
		return nil, err
	}
	rt = &Runtime{Config: c, Telemetry: tel, Log: tel.Logger, opts: o}
	rt.closers = append(rt.closers, func(ctx context.Context) { _ = tel.Shutdown(ctx) })
	started := rt
	defer func() {
		if err != nil {
			started.Log.Error("start failed", slog.Any("error", err))
			started.close(context.WithoutCancel(ctx))
		}
	}()

	if rt.Certs, err = mtls.NewReloader(c.TLSCert, c.TLSKey, rt.Log); err != nil {
		return nil, fmt.Errorf("load service certificate: %w", err)
	}
	if rt.Roots, err = mtls.LoadPool(c.TLSCA); err != nil {
		return nil, fmt.Errorf("load CA bundle: %w", err)
	}
	if rt.Metrics, err = server.NewMetrics(tel.Registry); err != nil {
		return nil, err
	}

	if rt.NATS, err = natsx.Connect(ctx, natsx.Options{
		URL: c.NATSURL, Name: c.Service, TLS: rt.natsTLS(), User: c.NATSUser, Password: c.NATSPassword, Logger: rt.Log,
		// Replies on this service's own inbox: its NATS permissions allow
		// no other (natsx.ServicePermissions).
		InboxPrefix: natsx.InboxPrefix(c.Service),
	}); err != nil {
		return nil, fmt.Errorf("connect NATS: %w", err)
	}
	rt.closers = append(rt.closers, func(context.Context) { _ = rt.NATS.Drain() })
	if rt.JS, err = jetstream.New(rt.NATS); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err = natsx.EnsureStreams(ctx, rt.JS); err != nil {
		return nil, fmt.Errorf("ensure streams: %w", err)
	}
	rt.Publisher = natsx.NewPublisher(rt.JS, tel.TracerProvider, tel.Propagator)
	if rt.Events, err = secevent.NewEmitter(secevent.Options{
		Service: c.Service, Registerer: tel.Registry, Sink: secevent.NewNATSSink(rt.JS),
		Logger: rt.Log, Propagator: tel.Propagator,
	}); err != nil {
		return nil, err
	}
	rt.AddWorker(rt.Events.Run)
	rt.AddCheck(server.Check{Name: "nats", Fn: func(context.Context) error {
		if !rt.NATS.IsConnected() {
			return errors.New("nats disconnected")
		}
		return nil
	}})

	if o.Migrations != nil {
		if rt.DB, err = dbx.Open(ctx, dbx.Options{URL: c.DatabaseURL, Logger: rt.Log, TracerProvider: tel.TracerProvider}); err != nil {
			return nil, err
		}
		rt.closers = append(rt.closers, func(context.Context) {
			if sqlDB, err := rt.DB.DB(); err == nil {
				_ = sqlDB.Close()
			}
		})
		if err = dbx.Migrate(ctx, rt.DB, o.Migrations); err != nil {
			return nil, err
		}
		rt.AddCheck(server.Check{Name: "database", Fn: func(ctx context.Context) error { return dbx.Ping(ctx, rt.DB) }})
	}
	return rt, nil
}

// natsTLS trusts the platform CA and presents the service certificate; for a
// plain nats:// URL it returns nil (config refuses that off loopback).
func (rt *Runtime) natsTLS() *tls.Config {
	u, err := url.Parse(rt.Config.NATSURL)
	if err != nil || u.Scheme != "tls" {
		return nil
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              rt.Roots,
		GetClientCertificate: rt.Certs.GetClientCertificate,
	}
}

// Checks returns the readiness checks registered so far.
func (rt *Runtime) Checks() []server.Check { return rt.checks }

// AddCheck adds a readiness check to /readyz. Call it before Serve.
func (rt *Runtime) AddCheck(c server.Check) { rt.checks = append(rt.checks, c) }

// AddWorker runs fn for the life of Serve (consumers, relays, refreshers).
// fn must return when its context ends.
func (rt *Runtime) AddWorker(fn func(context.Context)) { rt.workers = append(rt.workers, fn) }

// OnClose runs fn during shutdown, after the listeners drained and before
// NATS, the database and telemetry close.
func (rt *Runtime) OnClose(fn func(context.Context)) {
	rt.closers = append(rt.closers, fn)
}

// Engine returns a gin engine with the platform middleware, sharing this
// service's HTTP metrics.
func (rt *Runtime) Engine() (*gin.Engine, error) {
	return server.NewEngine(server.Options{Telemetry: rt.Telemetry, MaxBodyBytes: rt.opts.MaxBodyBytes, Metrics: rt.Metrics})
}

// Client returns an HTTP client for calling service upstream over mTLS: it
// presents this service's certificate, accepts only a server whose identity
// is upstream, and propagates the trace context.
func (rt *Runtime) Client(upstream string, timeout time.Duration) *http.Client {
	return &http.Client{Transport: rt.Transport(upstream, mtls.TransportOptions{}), Timeout: timeout}
}

// Transport is Client's round tripper, for callers (the gateway's proxy)
// that need to tune the pool.
func (rt *Runtime) Transport(upstream string, o mtls.TransportOptions) http.RoundTripper {
	t := mtls.NewTransport(mtls.ClientConfig(rt.Certs, rt.Roots, upstream), o)
	return otelhttp.NewTransport(t,
		otelhttp.WithTracerProvider(rt.Telemetry.TracerProvider),
		otelhttp.WithPropagators(rt.Telemetry.Propagator),
	)
}

// onReject turns a refused mTLS handshake into an mtls.rejected event.
func (rt *Runtime) onReject(reason, peer, identity string) {
	host, _, err := net.SplitHostPort(peer)
	if err != nil {
		host = peer
	}
	rt.Events.Emit(context.Background(), secevent.Event{
		Type: secevent.MTLSRejected, Reason: secevent.Reason(reason), ClientIP: host, ClientID: identity,
	})
}

// APITLS is the API listener's TLS configuration: client certificates
// required and checked against RAMPART_ALLOWED_CALLERS, or, for the public
// edge, server authentication only.
func (rt *Runtime) APITLS() *tls.Config {
	if rt.opts.PublicEdge {
		return mtls.PublicServerConfig(rt.Certs)
	}
	return mtls.ServerConfig(rt.Certs, rt.Roots, rt.Config.AllowedCallers, rt.onReject)
}

// Serve serves api on the API listener and the ops endpoints, runs the
// workers, and when ctx ends drains the listeners (RAMPART_SHUTDOWN_TIMEOUT),
// stops the workers and closes NATS, the database and telemetry — in that
// order, so the last requests' events and spans still get out.
func (rt *Runtime) Serve(ctx context.Context, api http.Handler) error {
	defer rt.close(context.WithoutCancel(ctx))
	o := rt.opts.Overrides
	apiL, err := rt.listen(ctx, o.APIListener, rt.Config.APIAddr)
	if err != nil {
		return err
	}
	opsL, err := rt.listen(ctx, o.OpsListener, rt.Config.OpsAddr)
	if err != nil {
		_ = apiL.Close()
		return err
	}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var workers errgroup.Group
	interval := o.CertReloadInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	workers.Go(func() error { rt.Certs.Run(workCtx, interval); return nil })
	for _, w := range rt.workers {
		workers.Go(func() error { w(workCtx); return nil })
	}

	apiSrv := server.NewHTTPServer(api, rt.APITLS(), rt.Log)
	if !rt.opts.PublicEdge {
		// NewServer's ConnState also reports a caller that presented an
		// allowed certificate without its key (a replayed certificate),
		// which crypto/tls refuses after VerifyConnection has passed.
		ms := mtls.NewServer(rt.Certs, rt.Roots, rt.Config.AllowedCallers, rt.onReject)
		apiSrv.TLSConfig, apiSrv.ConnState = ms.Config, ms.ConnState
	}
	err = server.Serve(ctx, rt.Log, rt.Config.ShutdownTimeout,
		server.Listener{Name: "api", Server: apiSrv, Listener: apiL},
		server.Listener{Name: "ops", Server: server.NewHTTPServer(server.OpsHandler(rt.Telemetry.Registry, rt.Checks), nil, rt.Log), Listener: opsL},
	)
	stopWork()
	_ = workers.Wait()
	rt.Log.Info("stopped")
	return err
}

// ReadyCheck turns a readiness flag into a /readyz check.
func ReadyCheck(name string, ready func() bool) server.Check {
	return server.Check{Name: name, Fn: func(context.Context) error {
		if !ready() {
			return fmt.Errorf("%s not ready", name)
		}
		return nil
	}}
}

func (rt *Runtime) listen(ctx context.Context, l net.Listener, addr string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	return server.Listen(ctx, addr)
}

// close runs the closers in reverse order of registration.
func (rt *Runtime) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := len(rt.closers) - 1; i >= 0; i-- {
		rt.closers[i](ctx)
	}
	rt.closers = nil
}
