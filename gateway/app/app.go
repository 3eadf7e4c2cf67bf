// Package app wires the gateway together. It is the one exported package of
// the gateway because devstack and the end-to-end tests run it through Run.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/rampart-go/rampart/gateway/internal/accesslog"
	"github.com/rampart-go/rampart/gateway/internal/edge"
	"github.com/rampart-go/rampart/gateway/internal/edgeauth"
	"github.com/rampart-go/rampart/gateway/internal/h1transport"
	"github.com/rampart-go/rampart/gateway/internal/httpapi"
	"github.com/rampart-go/rampart/gateway/internal/hygiene"
	"github.com/rampart-go/rampart/gateway/internal/proxy"
	"github.com/rampart-go/rampart/gateway/internal/ratelimit"
	"github.com/rampart-go/rampart/gateway/internal/route"
	"github.com/rampart-go/rampart/shared/breaker"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/revocation"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/service"
	"github.com/rampart-go/rampart/shared/tokens"
)

// Version is stamped at build time.
var Version = "dev"

// Run starts the gateway and blocks until ctx is cancelled or SIGINT/SIGTERM
// arrives, then drains and stops.
//
// Unlike the services, the gateway does not hand its API listener to
// Runtime.Serve: the public edge terminates TLS itself (see package edge)
// so that HTTP/1 plaintext can be checked for ambiguous framing, and it
// needs its own server limits. It therefore runs its listeners and
// workers here, in the same order Runtime.Serve does.
func Run(ctx context.Context, cfg Config) (err error) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg = cfg.withDefaults()
	if cfg.Tokens.JWKSURL == nil {
		return errors.New("gateway: token configuration (RAMPART_JWKS_URL) is required")
	}

	rt, err := service.New(ctx, service.Options{
		Common: cfg.Common, Version: Version, Overrides: cfg.Runtime, PublicEdge: true,
	})
	if err != nil {
		return err
	}
	var workers []func(context.Context)
	var closers []func(context.Context)
	defer func() {
		// Reverse order, then the runtime's own: NATS (its drain flushes
		// the last security events), telemetry last.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i](cctx)
		}
		_ = rt.NATS.Drain()
		_ = rt.Telemetry.Shutdown(cctx)
	}()
	defer func() {
		if err != nil {
			rt.Log.Error("gateway stopped", slog.Any("error", err))
		}
	}()
	workers = append(workers, rt.Events.Run)

	// Revocations and the verifier: the JWKS comes from the auth service
	// over mTLS and stays cached through its downtime; the deny-list is
	// loaded from KV and followed on NATS.
	rev, err := revocation.Open(ctx, revocation.Options{JS: rt.JS, NATS: rt.NATS, Logger: rt.Log})
	if err != nil {
		return err
	}
	workers = append(workers, rev.Run)
	rt.AddCheck(service.ReadyCheck("revocations", rev.Ready))
	jwks, err := tokens.NewJWKS(tokens.JWKSOptions{
		URL: cfg.Tokens.JWKSURL.String(), Client: rt.Client(AuthService, 5*time.Second), Logger: rt.Log,
	})
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	workers = append(workers, jwks.Run)
	rt.AddCheck(service.ReadyCheck("jwks", jwks.Ready))
	verifier, err := tokens.NewVerifier(tokens.Options{
		Issuer: cfg.Tokens.Issuer, Audience: cfg.Tokens.Audience, Keys: jwks, Revocations: rev,
	})
	if err != nil {
		return fmt.Errorf("token verifier: %w", err)
	}
	checker := edgeauth.NewChecker(edgeauth.Options{Verifier: verifier, Revocations: rev, MaxEntries: cfg.TokenCacheSize})

	gm, err := newGatewayMetrics(rt.Telemetry.Registry, checker)
	if err != nil {
		return err
	}

	// Rate limits.
	limits, err := cfg.RateLimits.parse()
	if err != nil {
		return err
	}
	var store *ratelimit.Redis
	if cfg.Redis != nil {
		ro := *cfg.Redis
		// Short timeouts: a slow Redis must cost a request milliseconds,
		// after which the limiter falls back to local state.
		ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = 250*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
		ro.MaxRetries = -1
		client := redis.NewClient(&ro)
		closers = append(closers, func(context.Context) { _ = client.Close() })
		store = ratelimit.NewRedis(client, "rampart:rl:")
	}
	allLimits := []*ratelimit.Limit{limits.Anonymous, limits.Authenticated, limits.Named[route.LimitLogin], limits.Named[route.LimitToken], limits.Named[route.LimitRegister]}
	for _, l := range allLimits {
		// Each limit's ratelimit.exceeded series exists at 0 from the start.
		rt.Events.Expect(secevent.RateLimitExceeded, secevent.Reason(l.Name))
	}
	limiter, err := ratelimit.New(ratelimit.Options{
		Limits:  allLimits,
		MaxKeys: cfg.RateLimitMaxKeys, Redis: store, Registerer: rt.Telemetry.Registry, Logger: rt.Log,
	})
	if err != nil {
		return err
	}

	// Upstreams.
	names := make([]string, 0, len(cfg.Upstreams))
	for name := range cfg.Upstreams {
		names = append(names, name)
	}
	pm, err := proxy.NewMetrics(rt.Telemetry.Registry, names)
	if err != nil {
		return err
	}
	var front *httpapi.Handler
	tracer := rt.Telemetry.Tracer("github.com/rampart-go/rampart/gateway")
	upstreams := make(map[string]http.Handler, len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		// The pool is sized for the gateway's concurrency: the default of two
		// idle connections per host would make every burst re-handshake.
		tr := upstreamTransport(rt, name, cfg.UpstreamTimeout)
		up := proxy.New(proxy.Options{
			Name: name, Target: u, Transport: tr, Logger: rt.Log, PublicHost: cfg.PublicURL.Host,
			Tracer: tracer, Propagator: rt.Telemetry.Propagator,
			Breaker: breaker.New(breaker.Options{Threshold: cfg.BreakerThreshold, OpenFor: cfg.BreakerOpenFor, OnChange: pm.OnChange(name)}),
			Metrics: pm,
			Fail:    func(w http.ResponseWriter, r *http.Request, e *problem.Error) { front.Fail(w, r, e) },
			BodyTooLarge: func(w http.ResponseWriter, r *http.Request) {
				front.BodyTooLarge(w, r)
			},
		})
		// The route's deadline covers the whole exchange; the transport's
		// ResponseHeaderTimeout bounds the wait for headers.
		upstreams[name] = proxy.WithTimeout(up, cfg.UpstreamTimeout+cfg.WriteTimeout)
	}

	// The access log goes to the service's log writer in batches
	// (accesslog): lines at info level, so a log level above info turns it
	// off as it always has.
	var access *accesslog.Log
	if *cfg.AccessLog && rt.Log.Enabled(ctx, slog.LevelInfo) {
		out := cfg.Runtime.LogWriter
		if out == nil {
			out = os.Stderr // telemetry's default: the same *os.File, so writes never interleave
		}
		access = accesslog.New(accesslog.Options{Out: out, Service: cfg.Service})
		workers = append(workers, access.Run)
	}
	front = httpapi.New(httpapi.Deps{
		Table: route.Table, Upstreams: upstreams, Events: rt.Events, Metrics: rt.Metrics,
		Health: server.HealthHandler(rt.Checks),
		Limits: httpapi.Limits{
			MaxURLBytes: cfg.MaxURLBytes, MaxBodyAPI: cfg.MaxBodyBytes, MaxBodyForm: cfg.MaxFormBodyBytes,
			Header: hygiene.HeaderLimits{MaxCount: cfg.MaxHeaderCount, MaxBytes: cfg.MaxHeaderBytes},
		},
		ClientIP:      hygiene.ClientIP{Trusted: cfg.TrustedProxies},
		Auth:          checker,
		Limiter:       limiter,
		RateLimits:    limits,
		CORSOrigins:   cfg.CORSOrigins,
		AccessLog:     access,
		TokenObserver: gm.tokenCheck,
		Tracer:        tracer,
		Propagator:    rt.Telemetry.Propagator,
	})
	root := httpapi.TraceGuard(front, hygiene.ClientIP{Trusted: cfg.TrustedProxies}, cfg.TrustClientTrace)

	return serve(ctx, rt, cfg, root, workers)
}

// upstreamTransport is the mTLS client of one upstream, speaking HTTP/1.1
// with a pool sized for the gateway's concurrency (the standard default of
// two idle connections per host would make every burst re-handshake).
// Bodiless GET and HEAD requests — most API traffic — go through
// h1transport, which writes the request and reads the answer on the
// handler's own goroutine; everything else through net/http's Transport
// (see the h1transport package comment for why, PERFORMANCE.md for what it
// measured). Neither is wrapped in otelhttp: the proxy starts the client
// span and injects the trace context itself (package tracing). HTTP/2
// would multiplex every request onto one connection whose writes are
// serialised under one lock and whose HPACK and framing cost more CPU per
// small request than HTTP/1.1 on a warm pooled connection.
func upstreamTransport(rt *service.Runtime, name string, timeout time.Duration) http.RoundTripper {
	tlsCfg := mtls.ClientConfig(rt.Certs, rt.Roots, name)
	tlsCfg.NextProtos = []string{"http/1.1"}
	const pool = 1024
	t := mtls.NewTransport(tlsCfg, mtls.TransportOptions{MaxIdleConnsPerHost: pool, ResponseHeaderTimeout: timeout})
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // non-nil and empty: no HTTP/2
	return h1transport.New(h1transport.Options{
		TLS: tlsCfg, Fallback: t, MaxIdlePerHost: pool, ResponseHeaderTimeout: timeout,
	})
}

// serve runs the public, redirect and ops listeners and the workers until
// ctx ends, then drains the listeners (RAMPART_SHUTDOWN_TIMEOUT) and stops
// the workers — the order of Runtime.Serve.
func serve(ctx context.Context, rt *service.Runtime, cfg Config, h http.Handler, workers []func(context.Context)) error {
	o := cfg.Runtime
	apiL, err := listen(ctx, o.APIListener, cfg.APIAddr)
	if err != nil {
		return err
	}
	opsL, err := listen(ctx, o.OpsListener, cfg.OpsAddr)
	if err != nil {
		_ = apiL.Close()
		return err
	}
	servers := []namedServer{
		{"api", edge.NewServer(edge.ServerOptions{
			Handler: h, ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout,
			WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
			// Above the handler's limit, so oversize heads up to here are
			// refused with a problem body and an event by the handler.
			MaxHeaderBytes: max(64<<10, 2*cfg.MaxHeaderBytes), Logger: rt.Log,
		}), edge.Listen(apiL, rt.APITLS(), cfg.ReadHeaderTimeout, rt.Log)},
		{"ops", server.NewHTTPServer(server.OpsHandler(rt.Telemetry.Registry, rt.Checks), nil, rt.Log), opsL},
	}
	if cfg.RedirectListener != nil || cfg.RedirectAddr != "" {
		rl, err := listen(ctx, cfg.RedirectListener, cfg.RedirectAddr)
		if err != nil {
			_ = apiL.Close()
			_ = opsL.Close()
			return err
		}
		servers = append(servers, namedServer{"redirect", edge.NewRedirectServer(cfg.PublicURL, rt.Log), rl})
	}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg errgroup.Group
	interval := o.CertReloadInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	wg.Go(func() error { rt.Certs.Run(workCtx, interval); return nil })
	for _, w := range workers {
		wg.Go(func() error { w(workCtx); return nil })
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(func() error {
			rt.Log.Info("listening", slog.String("listener", s.name), slog.String("addr", s.l.Addr().String()))
			if err := s.srv.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", s.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rt.Config.ShutdownTimeout)
		defer cancel()
		var errs []error
		for _, s := range servers {
			if err := s.srv.Shutdown(sctx); err != nil {
				rt.Log.Warn("drain timed out, closing", slog.String("listener", s.name), slog.Any("error", err))
				errs = append(errs, s.srv.Close())
			}
		}
		return errors.Join(errs...)
	})
	err = g.Wait()
	stopWork()
	_ = wg.Wait()
	rt.Log.Info("stopped")
	return err
}

type namedServer struct {
	name string
	srv  *http.Server
	l    net.Listener
}

func listen(ctx context.Context, l net.Listener, addr string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	return server.Listen(ctx, addr)
}

// parse turns the configured limit strings into limits.
func (rl RateLimitConfig) parse() (httpapi.RateLimits, error) {
	var out httpapi.RateLimits
	out.Named = map[string]*ratelimit.Limit{}
	for _, f := range rl.fields() {
		lim, err := ratelimit.ParseLimit(f.name, *f.dst)
		if err != nil {
			return out, fmt.Errorf("%s: %w", f.env, err)
		}
		switch f.name {
		case "anonymous":
			out.Anonymous = &lim
		case "authenticated":
			out.Authenticated = &lim
		default:
			out.Named[f.name] = &lim
		}
	}
	return out, nil
}

// gatewayMetrics are the gateway's own metrics beyond HTTP, upstream and
// rate-limit ones.
type gatewayMetrics struct {
	hits, misses prometheus.Counter
}

func newGatewayMetrics(reg prometheus.Registerer, checker *edgeauth.Checker) (*gatewayMetrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_gateway_token_checks_total",
		Help: "Edge token checks of well-formed bearer tokens, by result of the verified-token cache (hit, miss).",
	}, []string{"cache"})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rampart_gateway_token_cache_entries",
		Help: "Verified tokens held in the edge cache.",
	}, func() float64 { return float64(checker.Len()) })
	for _, c := range []prometheus.Collector{checks, size} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return &gatewayMetrics{hits: checks.WithLabelValues("hit"), misses: checks.WithLabelValues("miss")}, nil
}

func (m *gatewayMetrics) tokenCheck(hit bool) {
	if hit {
		m.hits.Inc()
	} else {
		m.misses.Inc()
	}
}
