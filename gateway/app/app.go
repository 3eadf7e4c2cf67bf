// Package app wires the gateway together. It is the one exported package of
// the gateway because devstack and the end-to-end tests run it through Run.
package app

import (
	"context"
	"net/http"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/rampart-go/rampart/gateway/internal/httpapi"
	"github.com/rampart-go/rampart/gateway/internal/proxy"
	"github.com/rampart-go/rampart/gateway/internal/route"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/service"
)

// Version is stamped at build time.
var Version = "dev"

// Run starts the gateway and blocks until ctx is cancelled or SIGINT/SIGTERM
// arrives, then drains and stops.
func Run(ctx context.Context, cfg Config) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rt, err := service.New(ctx, service.Options{
		Common: cfg.Common, Version: Version, Overrides: cfg.Runtime, PublicEdge: true,
	})
	if err != nil {
		return err
	}

	upstreams := make(map[string]http.Handler, len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		// The pool is sized for the gateway's concurrency: the default of two
		// idle connections per host would make every burst re-handshake.
		tr := rt.Transport(name, mtls.TransportOptions{MaxIdleConnsPerHost: 512, ResponseHeaderTimeout: cfg.UpstreamTimeout})
		upstreams[name] = proxy.New(proxy.Options{
			Name: name, Target: u, Transport: tr, Logger: rt.Log, RequestID: httpapi.RequestID,
		})
	}

	h := httpapi.New(httpapi.Deps{Table: route.Table, Upstreams: upstreams, Events: rt.Events, Metrics: rt.Metrics,
		Health: server.HealthHandler(rt.Checks)})
	traced := otelhttp.NewHandler(h, "gateway",
		otelhttp.WithTracerProvider(rt.Telemetry.TracerProvider),
		otelhttp.WithPropagators(rt.Telemetry.Propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " gateway" }),
	)
	return rt.Serve(ctx, traced)
}
