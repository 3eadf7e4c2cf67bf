// Command dashshot renders a Grafana dashboard from a real run to one SVG:
// it starts the in-process stack (deploy/stack) on ephemeral ports in a
// temporary directory, Debian's Prometheus scraping it every second with
// the repository's rules (deploy/observability/promrun), drives the
// showcase scenario (deploy/loadtest: real users and waves of attacks),
// evaluates every panel's PromQL through Prometheus's HTTP API and draws
// the dashboard's grid (deploy/observability/dashshot).
//
//	go run ./deploy/cmd/dashshot -out docs/img/security-overview.svg
//
// From the repository root (the defaults are relative to it). Flags:
// -dashboard, -duration, -step, -rate-interval, -rate, -users, -prometheus
// (default RAMPART_PROMETHEUS, then PATH). It takes about 25 s more than
// -duration and exits 1 on any error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv("RAMPART_PROMETHEUS"), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
