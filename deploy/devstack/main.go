// Command devstack runs the whole of Rampart in one process, with nothing to
// install but Go: `make run` (= go run ./deploy/devstack).
//
// It generates a dev PKI and secrets under --dir on first run (and reuses
// them afterwards), starts an embedded NATS server with JetStream and TLS,
// runs the gateway, auth-, user- and order-service on real TCP listeners
// with mutual TLS, writes DIR/endpoints.json, prints
// "rampart devstack ready: <gateway url>" and runs until SIGINT/SIGTERM.
//
// With --postgres and --nats-url it runs the same services against an
// external PostgreSQL and NATS, each service with its own role, database
// and NATS user, as in docker compose (docs/deployment.md).
//
// `devstack init --dir DIR` only generates the state (PKI, passwords,
// demo credentials) and exits: it is docker compose's one-shot init service.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rampart-go/rampart/deploy/stack"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "init" {
		return initState(args[1:])
	}
	if stack.IsChild(args) {
		return serveChild()
	}
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	dir := fs.String("dir", ".devstack", "state directory: PKI, databases, keys, NATS storage, secrets")
	fresh := fs.Bool("fresh", false, "wipe the state directory first")
	ephemeral := fs.Bool("ephemeral", false, "put every listener on a free loopback port")
	otlp := fs.String("otlp-endpoint", "", "export traces over OTLP/HTTP to this base URL (e.g. http://127.0.0.1:4318)")
	addrs := map[string]*string{}
	flagFor := map[string]string{
		stack.Gateway: "gateway", stack.Auth: "auth", stack.User: "user", stack.Order: "order",
	}
	for _, name := range stack.Services {
		short := flagFor[name]
		addrs[name] = fs.String(short+"-addr", "", fmt.Sprintf("%s API listener (default %s; :0 = free port)", name, stack.DefaultAddrs[name]))
		addrs[name+"-ops"] = fs.String(short+"-ops-addr", "", fmt.Sprintf("%s ops listener (default %s)", name, stack.DefaultAddrs[name+"-ops"]))
	}
	addrs["nats"] = fs.String("nats-addr", "", "embedded NATS listener (default "+stack.DefaultAddrs["nats"]+")")
	postgres := fs.String("postgres", "", "external PostgreSQL base URL (postgres://host:port/?sslmode=…): one role and database per service, created by deploy/compose/postgres/init-databases.sh")
	pgPrefix := fs.String("postgres-prefix", "", "prefix of the external PostgreSQL role and database names")
	natsURL := fs.String("nats-url", "", "external NATS server (nats:// on loopback, or tls://) instead of the embedded one")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback address (profiling; docs/PERFORMANCE.md)")
	processes := fs.Bool("processes", false, "run each service in a process of its own, as separate containers would (per-service memory; docs/PERFORMANCE.md)")
	auditTrail := fs.Bool("audit", true, "also run the audit trail: every security event in a hash-chained table, DIR/data/audit.db (embedded NATS only; docs/audit.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := stack.Options{Dir: *dir, Fresh: *fresh, Ephemeral: *ephemeral, OTLPEndpoint: *otlp, Addrs: map[string]string{},
		Postgres: *postgres, PostgresPrefix: *pgPrefix, NATSURL: *natsURL, Audit: *auditTrail, Processes: *processes}
	for k, v := range addrs {
		if *v != "" {
			o.Addrs[k] = *v
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *pprofAddr != "" {
		at, err := servePprof(ctx, *pprofAddr)
		if err != nil {
			return err
		}
		fmt.Printf("devstack pprof: http://%s/debug/pprof/\n", at)
		// Service processes serve their own profiles, each on a free
		// loopback port that it logs ("pprof listening").
		if err := os.Setenv(childPprofEnv, "1"); err != nil {
			return err
		}
	}
	s, err := stack.Start(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("rampart devstack ready: %s\n", s.Endpoints.Gateway)
	s.Wait()
	return s.Err()
}

// childPprofEnv asks service processes (--processes) to serve pprof too.
const childPprofEnv = "RAMPART_DEVSTACK_PPROF"

// serveChild is `devstack service`: one service of a --processes parent
// (stack.ServeChild). It stops on SIGTERM from the parent, or when the
// parent goes away.
func serveChild() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if os.Getenv(childPprofEnv) != "" {
		at, err := servePprof(ctx, "127.0.0.1:0")
		if err != nil {
			return err
		}
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Info("pprof listening",
			slog.String("service", "devstack-child"), slog.Int("pid", os.Getpid()), slog.String("addr", at))
	}
	return stack.ServeChild(ctx)
}

// initState is `devstack init`: generate or refresh the state and exit.
func initState(args []string) error {
	fs := flag.NewFlagSet("devstack init", flag.ContinueOnError)
	dir := fs.String("dir", ".devstack", "state directory")
	compose := fs.Bool("compose", false, "also lay out one directory per container under DIR/compose")
	validity := fs.Duration("cert-validity", 24*time.Hour, "service certificate lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := stack.Prepare(*dir, stack.PrepareOptions{CertValidity: *validity, Compose: *compose}); err != nil {
		return err
	}
	fmt.Printf("rampart state ready: %s\n", *dir)
	return nil
}
