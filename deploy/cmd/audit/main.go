// Command audit runs and reads Rampart's audit trail: the hash-chained table
// of every security event (shared/audit, docs/audit.md).
//
//	audit run                  consume RAMPART_SECURITY into the table until SIGTERM
//	audit verify [--checkpoint SEQ:HASH]…
//	                           walk the chain: exit 0 intact, 1 broken (the first
//	                           broken seq is printed), 2 could not check
//	audit tail [-n N] [--type T] [--subject S] [--service S] [--since 1h|RFC3339]
//	                           the newest entries, oldest first, as JSON lines
//
// Every subcommand takes --db (default RAMPART_DATABASE_URL): sqlite://path
// or postgres://…. `run` connects to NATS like a service does:
// RAMPART_NATS_URL (tls://, or nats:// on loopback only), RAMPART_TLS_CA
// (required with tls://), RAMPART_TLS_CERT and RAMPART_TLS_KEY (a client
// certificate, for a NATS that maps certificates to users), and
// RAMPART_NATS_USER / RAMPART_NATS_PASSWORD; RAMPART_LOG_LEVEL.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rampart-go/rampart/shared/audit"
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

// Exit codes.
const (
	exitOK     = 0
	exitBroken = 1 // verify: the chain is broken
	exitError  = 2 // usage, configuration, database or NATS errors
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: audit run|verify|tail [flags]
  run     consume RAMPART_SECURITY into the audit table until SIGTERM
  verify  check the hash chain: exit 0 intact, 1 broken, 2 error
  tail    print the newest entries as JSON lines
'audit <command> -h' lists a command's flags.`

// run is the whole command, so tests call it as main would.
func run(ctx context.Context, args []string, env config.Lookup, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitError
	}
	var err error
	code := exitOK
	switch args[0] {
	case "run":
		err = runTrail(ctx, args[1:], env, stderr)
	case "verify":
		code, err = verify(ctx, args[1:], env, stdout)
	case "tail":
		err = tail(ctx, args[1:], env, stdout)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "audit: unknown command %q\n%s\n", args[0], usage)
		return exitError
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "audit %s: %v\n", args[0], err)
		return exitError
	}
	return code
}

var errNoDB = errors.New("no database: pass --db or set RAMPART_DATABASE_URL")

// dbFlag adds --db, defaulting to RAMPART_DATABASE_URL.
func dbFlag(fs *flag.FlagSet, env config.Lookup) *string {
	def, _ := env("RAMPART_DATABASE_URL")
	return fs.String("db", def, "audit database: sqlite://path or postgres://… (default RAMPART_DATABASE_URL)")
}

// checkpoints collects repeated --checkpoint flags.
type checkpoints []audit.Head

func (c *checkpoints) String() string { return fmt.Sprint(*c) }
func (c *checkpoints) Set(s string) error {
	h, err := audit.ParseHead(s)
	if err != nil {
		return err
	}
	*c = append(*c, h)
	return nil
}

func verify(ctx context.Context, args []string, env config.Lookup, stdout io.Writer) (int, error) {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	db := dbFlag(fs, env)
	var cps checkpoints
	fs.Var(&cps, "checkpoint", "SEQ:HASH of a head recorded earlier (repeatable): the chain must still hold it")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return exitError, err
	}
	if *db == "" {
		return exitError, errNoDB
	}
	h, err := audit.OpenExisting(ctx, *db)
	if err != nil {
		return exitError, err
	}
	if sqlDB, err := h.DB(); err == nil {
		defer sqlDB.Close()
	}
	rep, err := audit.Verify(ctx, h, cps...)
	if err != nil {
		return exitError, err
	}
	switch {
	case *asJSON:
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
	case rep.OK():
		fmt.Fprintf(stdout, "audit chain intact: %d entries, head %s\n", rep.Entries, rep.Head)
	default:
		fmt.Fprintf(stdout, "audit chain broken at seq %d: %s\n  expected %s\n  actual   %s\n  last good entry: %s\n",
			rep.Break.Seq, rep.Break.Problem, rep.Break.Expected, rep.Break.Actual, rep.Head)
	}
	if !rep.OK() {
		return exitBroken, nil
	}
	return exitOK, nil
}

func tail(ctx context.Context, args []string, env config.Lookup, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit tail", flag.ContinueOnError)
	db := dbFlag(fs, env)
	var f audit.Filter
	fs.IntVar(&f.Limit, "n", 20, fmt.Sprintf("how many of the newest matching entries (at most %d)", audit.MaxTail))
	fs.StringVar(&f.Type, "type", "", "only this event type (auth.login.failed, access.denied, …)")
	fs.StringVar(&f.Subject, "subject", "", "only this subject (user id)")
	fs.StringVar(&f.Service, "service", "", "only events from this service")
	since := fs.String("since", "", "only events at or after: a duration back from now (1h, 30m) or an RFC 3339 time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.Limit < 1 || f.Limit > audit.MaxTail {
		return fmt.Errorf("-n must be from 1 to %d", audit.MaxTail)
	}
	if *since != "" {
		if d, err := time.ParseDuration(*since); err == nil && d > 0 {
			f.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *since); err == nil {
			f.Since = t
		} else {
			return fmt.Errorf("--since %q: want a positive duration (1h) or an RFC 3339 time", *since)
		}
	}
	if *db == "" {
		return errNoDB
	}
	h, err := audit.OpenExisting(ctx, *db)
	if err != nil {
		return err
	}
	if sqlDB, err := h.DB(); err == nil {
		defer sqlDB.Close()
	}
	entries, err := audit.Tail(ctx, h, f)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

func runTrail(ctx context.Context, args []string, env config.Lookup, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit run", flag.ContinueOnError)
	db := dbFlag(fs, env)
	name := fs.String("name", audit.DefaultName, "durable consumer name on RAMPART_SECURITY")
	every := fs.Duration("checkpoint-interval", audit.DefaultCheckpointInterval, "how often to log the chain's head (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r := config.NewReader(env)
	nopts, certs := natsOptions(r)
	level := r.String("RAMPART_LOG_LEVEL", "info")
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		r.Fail("RAMPART_LOG_LEVEL", "must be debug, info, warn or error")
	}
	if *db == "" {
		r.Fail("RAMPART_DATABASE_URL", "required but not set (or pass --db)")
	} else if u, err := url.Parse(*db); err == nil && u.Scheme != "sqlite" {
		// The same rule as every service's database (config.ReadCommon):
		// this one holds every security event.
		r.Insecure("RAMPART_DATABASE_URL", config.PostgresUnverified(u), "PostgreSQL to a non-loopback host without sslmode=verify-full")
	}
	if err := r.Err(); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl})).With(slog.String("service", "audit"))
	interval := *every
	if interval == 0 {
		interval = -1
	}
	if certs != nil {
		go certs.Run(ctx, 30*time.Second)
	}
	return audit.Serve(ctx, audit.ServeOptions{
		NATS: nopts, DatabaseURL: *db,
		Trail: audit.Options{Name: *name, CheckpointInterval: interval, Logger: log},
	})
}

// natsOptions reads the NATS connection the way services do
// (shared/config, shared/service): TLS trusting RAMPART_TLS_CA for tls://
// URLs, an optional client certificate, optional user and password.
func natsOptions(r *config.Reader) (natsx.Options, *mtls.Reloader) {
	o := natsx.Options{Name: "audit"}
	var certs *mtls.Reloader
	if r.Required("RAMPART_NATS_URL") != "" {
		if u := r.URL("RAMPART_NATS_URL", "", "nats", "tls"); u != nil {
			o.URL = u.String()
			r.Insecure("RAMPART_NATS_URL", u.Scheme == "nats" && !loopback(u), "plain-text NATS to a non-loopback host")
			if u.Scheme == "tls" {
				o.TLS, certs = natsTLS(r)
			}
		}
	}
	o.User = r.String("RAMPART_NATS_USER", "")
	o.Password = r.String("RAMPART_NATS_PASSWORD", "")
	if (o.User == "") != (o.Password == "") {
		r.Fail("RAMPART_NATS_PASSWORD", "RAMPART_NATS_USER and RAMPART_NATS_PASSWORD must be set together")
	}
	return o, certs
}

// natsTLS is the TLS configuration for a tls:// NATS URL, and the client
// certificate's reloader when one is configured.
func natsTLS(r *config.Reader) (*tls.Config, *mtls.Reloader) {
	var certs *mtls.Reloader
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := r.Required("RAMPART_TLS_CA"); ca != "" {
		if ca = r.File("RAMPART_TLS_CA", ""); ca != "" {
			pool, err := mtls.LoadPool(ca)
			if err != nil {
				r.Fail("RAMPART_TLS_CA", err.Error())
			}
			cfg.RootCAs = pool
		}
	}
	cert, key := r.File("RAMPART_TLS_CERT", ""), r.File("RAMPART_TLS_KEY", "")
	switch {
	case (cert == "") != (key == ""):
		r.Fail("RAMPART_TLS_KEY", "RAMPART_TLS_CERT and RAMPART_TLS_KEY must be set together")
	case cert != "":
		// runTrail runs the reloader: short-lived certificates are renewed
		// without a restart.
		rl, err := mtls.NewReloader(cert, key, nil)
		if err != nil {
			r.Fail("RAMPART_TLS_CERT", err.Error())
			break
		}
		cfg.GetClientCertificate = rl.GetClientCertificate
		certs = rl
	}
	return cfg, certs
}

func loopback(u *url.URL) bool {
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
