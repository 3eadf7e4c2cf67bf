// Package stack runs the whole of Rampart in one process: an embedded NATS
// server with JetStream and TLS, the four services on real TCP listeners with
// real mutual TLS, and SQLite databases, all under one state directory. It is
// what `make run` (deploy/devstack) starts and what the end-to-end tests
// drive, so the tests exercise exactly the code a developer runs.
package stack

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	authapp "github.com/rampart-go/rampart/auth-service/app"
	gatewayapp "github.com/rampart-go/rampart/gateway/app"
	orderapp "github.com/rampart-go/rampart/order-service/app"
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/service"
	userapp "github.com/rampart-go/rampart/user-service/app"
)

// Service names, in start order: the gateway last, once its upstreams listen.
const (
	Auth    = "auth-service"
	User    = "user-service"
	Order   = "order-service"
	Gateway = "gateway"
)

// Services lists every service in start order.
var Services = []string{Auth, User, Order, Gateway}

// AllowedCallers is the default mTLS caller allowlist of each service: the
// gateway calls everyone; order-service calls user- and auth-service;
// user-service calls auth-service; nothing else.
var AllowedCallers = map[string][]string{
	Auth:  {Gateway, Order, User},
	User:  {Gateway, Order},
	Order: {Gateway},
}

// Options configure Start.
type Options struct {
	// Dir holds all state: PKI, databases, keys, NATS storage, secrets.
	Dir string
	// Fresh wipes Dir first.
	Fresh bool
	// Addrs overrides listener addresses, keyed "<service>" for the API
	// listener, "<service>-ops" for the ops listener and "nats". Missing
	// keys take the CONTRACT §1 defaults, or 127.0.0.1:0 when Ephemeral.
	Addrs map[string]string
	// Ephemeral puts every listener on a free loopback port.
	Ephemeral bool
	// LogWriter receives every service's JSON logs (default stderr).
	LogWriter io.Writer
	// SpanProcessors are added to every service's tracer provider.
	SpanProcessors []sdktrace.SpanProcessor
	// CertReloadInterval is passed to every service (default 30s).
	CertReloadInterval time.Duration
	// OTLPEndpoint, when set, exports every service's spans.
	OTLPEndpoint string
	// Postgres, when set, is the base URL of an external PostgreSQL
	// (postgres://host:port/?sslmode=…): each service connects to its own
	// database as its own role, as in docker compose (external.go).
	Postgres string
	// PostgresPrefix is prepended to every role and database name (a
	// scratch namespace on a shared server; empty in compose).
	PostgresPrefix string
	// NATSURL, when set, is an external NATS server used instead of the
	// embedded one; each service connects as its own user.
	NATSURL string
	// AuthRatePerMinute and AuthRateBurst override the auth service's
	// per-address login and token limits (0: its defaults). Tests that
	// sign in many times from loopback raise them.
	AuthRatePerMinute, AuthRateBurst int
	// Audit also runs the audit trail (shared/audit, docs/audit.md): every
	// security event appended to a hash-chained table in
	// AuditDatabaseURL(Dir). Embedded NATS only: with NATSURL, run
	// deploy/cmd/audit beside the stack instead.
	Audit bool
	// Processes runs each service in a child process of Executable
	// (devstack's `service` subcommand, process.go) instead of a
	// goroutine: separate heaps and RSS, as in separate containers.
	// SpanProcessors cannot cross processes and are refused with it.
	Processes bool
	// Executable is the binary Processes starts (default: this one).
	Executable string

	// child is set by ServeChild: run one service on inherited listeners.
	child *childState
}

// DefaultAddrs are the CONTRACT §1 defaults. None collides with the ports
// real servers on a developer machine may hold (4222, 5432, 6379, ...).
var DefaultAddrs = map[string]string{
	Gateway: "127.0.0.1:8443", Gateway + "-ops": "127.0.0.1:9181",
	Auth: "127.0.0.1:9441", Auth + "-ops": "127.0.0.1:9182",
	User: "127.0.0.1:9442", User + "-ops": "127.0.0.1:9183",
	Order: "127.0.0.1:9443", Order + "-ops": "127.0.0.1:9184",
	"nats": "127.0.0.1:14222",
}

// Endpoints is endpoints.json (CONTRACT §1).
type Endpoints struct {
	Gateway  string                      `json:"gateway"`
	Services map[string]ServiceEndpoints `json:"services"`
	NATS     string                      `json:"nats"`
	CAFile   string                      `json:"ca_file"`
}

// ServiceEndpoints are one service's listener URLs.
type ServiceEndpoints struct {
	API string `json:"api"`
	Ops string `json:"ops"`
}

// Stack is a running Rampart.
type Stack struct {
	Dir       string
	Endpoints Endpoints
	// PKIDir holds ca.crt, ca.key and one <service>.crt/.key pair each.
	PKIDir string
	// CA signs every service certificate (tests use it to mint identities).
	CA *mtls.CA
	// NATS is the embedded server.
	NATS *natsx.Embedded
	// Credentials are the demo accounts and clients (credentials.json).
	Credentials authapp.Credentials
	// natsURL is the external NATS server's URL, when there is one.
	natsURL string

	secrets *secrets
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    map[string]error
	pids    map[string]int // process mode: each service's child
	done    chan struct{}
	ctl     control // stop and start one service (control.go)
}

// secrets are generated on first run and kept in Dir/secrets.json (0600).
type secrets struct {
	NATSPasswords map[string]string `json:"nats_passwords"`
	// PostgresPasswords are the per-service database roles' passwords,
	// and PostgresAdmin's (compose's superuser).
	PostgresPasswords map[string]string `json:"postgres_passwords"`
}

// Start prepares the state directory, starts NATS and the four services,
// waits until the gateway is ready and writes endpoints.json. The stack runs
// until ctx ends or Stop is called.
func Start(ctx context.Context, o Options) (*Stack, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if o.Processes {
		if len(o.SpanProcessors) > 0 {
			return nil, errors.New("stack: span processors cannot observe services in other processes")
		}
		if o.Executable == "" {
			if o.Executable, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("stack: own executable: %w", err)
			}
		}
	}
	if o.Fresh && o.child == nil {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("wipe %s: %w", dir, err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "pki"), filepath.Join(dir, "data"), filepath.Join(dir, "nats")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	logw := o.LogWriter
	if logw == nil {
		logw = os.Stderr
	}
	o.LogWriter = logw
	log := slog.New(slog.NewJSONHandler(logw, nil)).With(slog.String("service", "devstack"))

	s := &Stack{Dir: dir, PKIDir: filepath.Join(dir, "pki"), errs: map[string]error{}, done: make(chan struct{})}
	// A child uses the PKI its parent prepared; four children renewing a
	// certificate at once would race.
	if o.child == nil {
		if s.CA, err = mtls.EnsureCA(s.PKIDir); err != nil {
			return nil, fmt.Errorf("dev CA: %w", err)
		}
		hosts := []string{"localhost"}
		ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		for _, name := range append(append([]string{}, Services...), "nats") {
			if _, _, err := s.CA.EnsureLeaf(s.PKIDir, name, append(hosts, name), ips, 24*time.Hour); err != nil {
				return nil, fmt.Errorf("certificate for %s: %w", name, err)
			}
		}
	}
	sec, err := loadSecrets(filepath.Join(dir, "secrets.json"))
	if err != nil {
		return nil, err
	}
	credsFile := filepath.Join(dir, "credentials.json")
	if s.Credentials, err = ensureCredentials(credsFile); err != nil {
		return nil, err
	}

	// Bind every socket before anything starts, so that each service's
	// configuration can name the real addresses of the others.
	listeners := map[string]net.Listener{}
	closeAll := func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}
	addr := func(key string) string {
		if a, ok := o.Addrs[key]; ok && a != "" {
			return a
		}
		if o.Ephemeral {
			return "127.0.0.1:0"
		}
		return DefaultAddrs[key]
	}
	if o.child != nil {
		listeners = o.child.listeners // the rest are other processes' addresses
	}
	for _, name := range Services {
		if o.child != nil {
			break // a child binds nothing
		}
		for _, key := range []string{name, name + "-ops"} {
			var lc net.ListenConfig
			l, err := lc.Listen(ctx, "tcp", addr(key))
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("listen for %s: %w", key, err)
			}
			listeners[key] = l
		}
	}

	s.ctl.listeners = listeners
	natsTLS, err := s.natsServerTLS()
	if err != nil {
		closeAll()
		return nil, err
	}
	natsHost, natsPort, err := splitHostPort(addr("nats"))
	if err != nil {
		closeAll()
		return nil, err
	}
	users := make([]natsx.User, 0, len(Services))
	for _, name := range Services {
		pub, sub := NATSPermissions(name)
		users = append(users, natsx.User{Name: name, Password: sec.NATSPasswords[name], Publish: pub, Subscribe: sub,
			PublishDeny: natsx.ServicePublishDeny()})
	}
	// The ops user reads streams (the audit trail, the tests) and may publish
	// nothing but JetStream API requests. Unlike the services, it may read
	// RAMPART_SECURITY and manage its consumers (natsx.SecurityStreamReadAPI).
	opsPub, opsSub := natsx.OpsPermissions(nil, []string{"rampart.>"})
	users = append(users, natsx.User{Name: OpsUser, Password: sec.NATSPasswords[OpsUser], Publish: opsPub, Subscribe: opsSub,
		PublishDeny: natsx.DestructiveJetStreamAPI()})
	s.secrets = sec
	if s.NATS, err = s.startBackends(o, natsx.EmbeddedOptions{
		Host: natsHost, Port: natsPort, StoreDir: filepath.Join(dir, "nats"), TLS: natsTLS, Users: users, Logger: log,
	}); err != nil {
		closeAll()
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}

	// hostPort is where key listens: our own listener's address, or, in a
	// child, the address its parent bound for another process.
	hostPort := func(key string) string {
		if l, ok := listeners[key]; ok {
			return l.Addr().String()
		}
		return o.Addrs[key]
	}
	httpsURL := func(key string) *url.URL {
		return &url.URL{Scheme: "https", Host: hostPort(key)}
	}
	publicURL := httpsURL(Gateway)
	s.Endpoints = Endpoints{
		Gateway:  publicURL.String(),
		Services: map[string]ServiceEndpoints{},
		NATS:     s.natsClientURL(),
		CAFile:   filepath.Join(s.PKIDir, "ca.crt"),
	}
	for _, name := range Services {
		s.Endpoints.Services[name] = ServiceEndpoints{
			API: httpsURL(name).String(),
			Ops: "http://" + hostPort(name+"-ops"),
		}
	}

	common := func(name string, db bool) config.Common {
		c := config.Common{
			Service:         name,
			PublicURL:       publicURL,
			TLSCert:         filepath.Join(s.PKIDir, name+".crt"),
			TLSKey:          filepath.Join(s.PKIDir, name+".key"),
			TLSCA:           filepath.Join(s.PKIDir, "ca.crt"),
			NATSURL:         s.natsClientURL(),
			NATSUser:        name,
			NATSPassword:    sec.NATSPasswords[name],
			AllowedCallers:  AllowedCallers[name],
			LogLevel:        "info",
			ShutdownTimeout: 10 * time.Second,
			OTLPEndpoint:    o.OTLPEndpoint,
		}
		if db {
			c.DatabaseURL = databaseURL(o, dir, name)
		}
		return c
	}
	overrides := func(name string) service.Overrides {
		return service.Overrides{
			APIListener: s.ctl.listener(name), OpsListener: s.ctl.listener(name + "-ops"),
			LogWriter: logw, SpanProcessors: o.SpanProcessors, CertReloadInterval: o.CertReloadInterval,
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	run := func(name string, fn func(context.Context) error) {
		s.launch(runCtx, name, fn, func(err error) {
			s.mu.Lock()
			s.errs[name] = err
			s.mu.Unlock()
			log.Error("service stopped with error", slog.String("name", name), slog.Any("error", err))
			cancel() // one service down takes the stack down: no half-running demo
		})
	}
	// serve runs a service here, in a child process (Processes), or — in a
	// child — only the child's own service.
	serve := func(name string, fn func(context.Context) error) {
		switch {
		case o.child != nil:
			if name == o.child.service {
				run(name, fn)
			}
		case o.Processes:
			spec := childSpec{
				Service: name, Dir: dir, Addrs: map[string]string{}, NATSURL: s.natsClientURL(),
				Postgres: o.Postgres, PostgresPrefix: o.PostgresPrefix, OTLPEndpoint: o.OTLPEndpoint,
				AuthRatePerMinute: o.AuthRatePerMinute, AuthRateBurst: o.AuthRateBurst, CertReloadInterval: o.CertReloadInterval,
			}
			for _, svc := range Services {
				spec.Addrs[svc], spec.Addrs[svc+"-ops"] = hostPort(svc), hostPort(svc+"-ops")
			}
			run(name, s.processRunner(o, name, spec, log))
		default:
			run(name, fn)
		}
	}
	serve(Auth, func(ctx context.Context) error {
		return authapp.Run(ctx, authapp.Config{
			Common: common(Auth, true), KeysDir: filepath.Join(dir, "keys"), KeyRotation: 24 * time.Hour,
			AccessTokenTTL: 10 * time.Minute, SeedFile: credsFile, AuthRatePerMinute: o.AuthRatePerMinute, AuthRateBurst: o.AuthRateBurst,
			Runtime: overrides(Auth),
		})
	})
	tokenCfg := service.TokenConfig{
		JWKSURL:  httpsURL(Auth).JoinPath("/.well-known/jwks.json"),
		Issuer:   publicURL.String(),
		Audience: service.DefaultAudience,
	}
	serve(User, func(ctx context.Context) error {
		return userapp.Run(ctx, userapp.Config{Common: common(User, true), Tokens: tokenCfg, Runtime: overrides(User)})
	})
	serve(Order, func(ctx context.Context) error {
		return orderapp.Run(ctx, orderapp.Config{
			Common: common(Order, true), Tokens: tokenCfg, UserURL: httpsURL(User), AuthURL: httpsURL(Auth),
			Runtime: overrides(Order),
		})
	})
	// The gateway checks tokens at the edge with the same settings as the
	// services; raised auth limits (tests that sign in many times from
	// loopback) apply to its named limits too.
	var gatewayLimits gatewayapp.RateLimitConfig
	if o.AuthRatePerMinute > 0 {
		l := fmt.Sprintf("%d/m:%d", o.AuthRatePerMinute, max(o.AuthRateBurst, 1))
		gatewayLimits = gatewayapp.RateLimitConfig{Anonymous: l, Authenticated: l, Login: l, Token: l, Register: l}
	}
	serve(Gateway, func(ctx context.Context) error {
		return gatewayapp.Run(ctx, gatewayapp.Config{
			Common: common(Gateway, false),
			Upstreams: map[string]*url.URL{
				Auth: httpsURL(Auth), User: httpsURL(User), Order: httpsURL(Order),
			},
			UpstreamTimeout: 15 * time.Second,
			Tokens:          tokenCfg,
			RateLimits:      gatewayLimits,
			Runtime:         overrides(Gateway),
		})
	})
	if o.Audit && o.child == nil {
		if s.NATS != nil {
			run(AuditName, func(ctx context.Context) error { return s.runAudit(ctx, logw) })
		} else {
			log.Warn("audit trail not started: devstack runs it on the embedded NATS only; run deploy/cmd/audit against the external one")
		}
	}
	go func() {
		s.wg.Wait()
		if s.NATS != nil {
			s.NATS.Shutdown()
		}
		close(s.done)
	}()

	if o.child != nil {
		return s, nil // the parent waits for every service and writes endpoints.json
	}
	if err := s.waitReady(runCtx, 60*time.Second); err != nil {
		s.Stop()
		if serr := s.Err(); serr != nil {
			return nil, serr
		}
		return nil, err
	}
	if err := writeJSON(filepath.Join(dir, "endpoints.json"), s.Endpoints, 0o644); err != nil {
		s.Stop()
		return nil, err
	}
	if o.Processes {
		if err := s.writePIDs(); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// NATSPublish and NATSSubscribe are each service's own NATS subjects: least
// privilege, so a compromised gateway cannot forge domain events and a
// compromised order-service cannot publish revocations.
var (
	NATSPublish = map[string][]string{
		Gateway: {"rampart.security.gateway.>"},
		Auth:    {"rampart.security.auth-service.>", "rampart.events.account.>", "rampart.revocations", "$KV.rampart_revocations.>"},
		User:    {"rampart.security.user-service.>", "rampart.events.user.>"},
		Order:   {"rampart.security.order-service.>", "rampart.events.order.>"},
	}
	// Every service that checks tokens keeps a revocation list: it reads the
	// KV bucket and listens on rampart.revocations for the faster push.
	NATSSubscribe = map[string][]string{
		Gateway: {"rampart.revocations"},
		Auth:    {"rampart.revocations"},
		User:    {"rampart.revocations"},
		Order:   {"rampart.revocations"},
	}
)

// NATSConsumers are each service's durable consumers on RAMPART_EVENTS,
// name and filter subject (the services' internal/events packages): a
// service may create and pull from these only.
var NATSConsumers = map[string][][2]string{
	Auth:  {{"auth-service-user-deleted", "rampart.events.user.deleted"}},
	User:  {{"user-service-account-created", "rampart.events.account.created"}},
	Order: {{"order-service-user-deleted", "rampart.events.user.deleted"}},
}

// NATSPermissions are service name's NATS publish and subscribe allow
// lists: its own subjects, its durable consumers, and what every
// JetStream client needs (natsx.ServicePermissions). Its deny list is
// natsx.ServicePublishDeny. docker compose's NATS configuration holds the
// same (deploy/composetest checks).
func NATSPermissions(name string) (pub, sub []string) {
	own := append([]string{}, NATSPublish[name]...)
	for _, c := range NATSConsumers[name] {
		own = append(own, natsx.DurableConsumerAPI(natsx.StreamEvents, c[0], c[1])...)
	}
	return natsx.ServicePermissions(name, own, NATSSubscribe[name])
}

// OpsUser is the NATS user for operators' read-only tools.
const OpsUser = "ops"

// NATSPassword returns the generated NATS password of user (a service name
// or OpsUser).
func (s *Stack) NATSPassword(user string) string { return s.secrets.NATSPasswords[user] }

// Wait blocks until every service has stopped.
func (s *Stack) Wait() { <-s.done }

// Stop stops every service gracefully and waits for them and NATS.
func (s *Stack) Stop() {
	s.cancel()
	s.Wait()
}

// Err joins the errors of services that stopped with one.
func (s *Stack) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, err := range s.errs {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return errors.Join(errs...)
}

// HTTPClient returns a client that trusts the dev CA and, when identity is
// not empty, presents that service's certificate (for calling service APIs
// directly, as a peer would).
func (s *Stack) HTTPClient(identity string) (*http.Client, error) {
	pool, err := mtls.LoadPool(s.Endpoints.CAFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if identity != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(s.PKIDir, identity+".crt"), filepath.Join(s.PKIDir, identity+".key"))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}, nil
}

// waitReady polls every ops /readyz, then the gateway's public /readyz.
func (s *Stack) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client, err := s.HTTPClient("")
	if err != nil {
		return err
	}
	urls := []string{}
	for _, name := range Services {
		urls = append(urls, s.Endpoints.Services[name].Ops+"/readyz")
	}
	urls = append(urls, s.Endpoints.Gateway+"/readyz")
	for _, u := range urls {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", u, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func (s *Stack) natsServerTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.PKIDir, "nats.crt"), filepath.Join(s.PKIDir, "nats.key"))
	if err != nil {
		return nil, fmt.Errorf("NATS certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

func loadSecrets(path string) (*secrets, error) {
	var s secrets
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if s.NATSPasswords == nil {
		s.NATSPasswords = map[string]string{}
	}
	changed := false
	for _, name := range append(append([]string{}, Services...), OpsUser) {
		if s.NATSPasswords[name] == "" {
			s.NATSPasswords[name] = Secret()
			changed = true
		}
	}
	if s.PostgresPasswords == nil {
		s.PostgresPasswords = map[string]string{}
	}
	for _, name := range append(append([]string{}, DatabaseServices...), PostgresAdmin) {
		if s.PostgresPasswords[name] == "" {
			s.PostgresPasswords[name] = Secret()
			changed = true
		}
	}
	if changed {
		if err := writeJSON(path, s, 0o600); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// ensureCredentials loads DIR/credentials.json, generating it (mode 0600)
// on first run: the demo accounts' passwords and the machine client's
// secret exist only there and, hashed, in the auth service's database.
func ensureCredentials(path string) (authapp.Credentials, error) {
	var c authapp.Credentials
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("read %s: %w", path, err)
		}
		return c, nil
	case !errors.Is(err, os.ErrNotExist):
		return c, fmt.Errorf("read %s: %w", path, err)
	}
	c.Accounts = map[string]authapp.CredentialAccount{}
	for _, role := range []string{"admin", "manager", "user"} {
		c.Accounts[role] = authapp.CredentialAccount{Email: role + "@rampart.test", Password: Secret()}
	}
	c.Clients = []authapp.CredentialClient{
		{ClientID: "rampart-demo", Type: "public", RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"}},
		{ClientID: "rampart-machine", Type: "confidential", ClientSecret: Secret()},
	}
	for _, svc := range []string{Gateway, User, Order} {
		c.Clients = append(c.Clients, authapp.CredentialClient{ClientID: svc, Type: "tls_client_auth"})
	}
	return c, writeJSON(path, c, 0o600)
}

// Secret returns 256 random bits, base64url encoded.
func Secret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// writeJSON writes v atomically with the given mode.
func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("NATS address %q: %w", addr, err)
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil {
		return "", 0, fmt.Errorf("NATS address %q: bad port", addr)
	}
	if p == 0 {
		p = -1 // nats-server's "pick a free port"
	}
	return host, p, nil
}
