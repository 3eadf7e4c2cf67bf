// Command gatewaybench is the Go half of `make bench-gateway`
// (deploy/bench/gateway.sh): it runs, as separate processes so each one
// has its own runtime like nginx, HAProxy and Caddy do,
//
//	gatewaybench upstream -dir D -plain ADDR -mtls ADDR
//	    the trivial upstream: one small JSON answer on every path, over
//	    plain HTTP (behind the reference proxies) and over mutual TLS with
//	    the order-service identity (behind the gateway);
//	gatewaybench gateway -dir D -addr ADDR -ops ADDR -upstream URL
//	    the real gateway (gateway/app.Run) doing its whole job: TLS at the
//	    edge, hygiene, an ES256 token check with the verified-token cache,
//	    the deny-list, per-subject rate limits (set high enough not to
//	    throttle), header stripping, metrics, the JSON access log and mTLS
//	    to the upstream. It starts the embedded NATS server the deny-list
//	    needs and an mTLS JWKS endpoint with the auth-service identity,
//	    mints a valid access token and writes it to D/token once the
//	    gateway is ready.
//
// Both take the dev PKI in D/pki, creating it if needed.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" //nolint:gosec // G108: a benchmark harness; pprof is served only with -pprof, on its own listener
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	gatewayapp "github.com/rampart-go/rampart/gateway/app"
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/service"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gatewaybench upstream|gateway [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "upstream":
		err = upstream(ctx, os.Args[2:])
	case "gateway":
		err = gateway(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(1)
	}
}

// names are the identities the benchmark needs certificates for.
var names = []string{"gateway", "auth-service", "order-service", "user-service"}

func ensurePKI(dir string) (*mtls.CA, string, error) {
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, "", err
	}
	ca, err := mtls.EnsureCA(pki)
	if err != nil {
		return nil, "", err
	}
	for _, n := range names {
		if _, _, err := ca.EnsureLeaf(pki, n, []string{"localhost", n}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour); err != nil {
			return nil, "", err
		}
	}
	return ca, pki, nil
}

// mtlsServerConfig presents name's certificate and requires a client
// certificate from the dev CA.
func mtlsServerConfig(pki, name string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, name+".crt"), filepath.Join(pki, name+".key"))
	if err != nil {
		return nil, err
	}
	pool, err := mtls.LoadPool(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
	}, nil
}

// body is the upstream's answer: about the size of a small API response.
var body = []byte(`{"items":[{"id":"7d0c6f2e-1b8a-4c55-9a51-3f0f3c1d2a11","name":"bench","price_cents":1200}]}` + "\n")

func trivial(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{fmt.Sprint(len(body))}
	_, _ = w.Write(body)
}

func upstream(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory (PKI)")
	plain := fs.String("plain", "127.0.0.1:18081", "plain HTTP address")
	secure := fs.String("mtls", "127.0.0.1:18082", "mTLS address (order-service identity)")
	_ = fs.Parse(args)
	_, pki, err := ensurePKI(*dir)
	if err != nil {
		return err
	}
	tlsCfg, err := mtlsServerConfig(pki, "order-service")
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	pl, err := lc.Listen(ctx, "tcp", *plain)
	if err != nil {
		return err
	}
	sl, err := lc.Listen(ctx, "tcp", *secure)
	if err != nil {
		return err
	}
	h := http.HandlerFunc(trivial)
	ps := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Minute}
	ss := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Minute, TLSConfig: tlsCfg}
	errc := make(chan error, 2)
	go func() { errc <- ps.Serve(pl) }()
	go func() { errc <- ss.ServeTLS(sl, "", "") }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	_ = ps.Close()
	_ = ss.Close()
	return nil
}

func gateway(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory (PKI, NATS, logs, token)")
	addr := fs.String("addr", "127.0.0.1:18443", "public TLS address")
	ops := fs.String("ops", "127.0.0.1:18444", "ops address")
	up := fs.String("upstream", "https://127.0.0.1:18082", "mTLS upstream (order-service identity)")
	accessLog := fs.Bool("access-log", true, "write the JSON access log (to DIR/gateway.log)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (profiling the hot path)")
	_ = fs.Parse(args)
	gatewayapp.TuneGC(os.LookupEnv) // as gateway's main does
	if *pprofAddr != "" {
		go func() {
			ps := &http.Server{Addr: *pprofAddr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second}
			_ = ps.ListenAndServe()
		}()
	}
	_, pki, err := ensurePKI(*dir)
	if err != nil {
		return err
	}
	upURL, err := url.Parse(*up)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(*dir, "gateway.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()

	// The deny-list lives in JetStream: an embedded server, plain NATS on
	// loopback.
	nats, err := natsx.StartEmbedded(natsx.EmbeddedOptions{StoreDir: filepath.Join(*dir, "nats"), Port: -1})
	if err != nil {
		return err
	}
	defer nats.Shutdown()

	// The key set, over mTLS with the auth-service identity, as the gateway
	// expects.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	kid := randomHex(8)
	jwksJSON, err := jwks(&key.PublicKey, kid)
	if err != nil {
		return err
	}
	jwksTLS, err := mtlsServerConfig(pki, "auth-service")
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	jl, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	js := &http.Server{ReadHeaderTimeout: 5 * time.Second, TLSConfig: jwksTLS,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/jwk-set+json")
			_, _ = w.Write(jwksJSON)
		})}
	go func() { _ = js.ServeTLS(jl, "", "") }()
	defer js.Close()
	authURL := &url.URL{Scheme: "https", Host: jl.Addr().String()}

	apiL, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	opsL, err := lc.Listen(ctx, "tcp", *ops)
	if err != nil {
		return err
	}
	public := &url.URL{Scheme: "https", Host: apiL.Addr().String()}
	// Limits no benchmark reaches: every request takes the whole path,
	// limiter included, and is allowed.
	const high = "1000000/s:1000000"
	cfg := gatewayapp.Config{
		Common: config.Common{
			Service: gatewayapp.Name, PublicURL: public,
			TLSCert: filepath.Join(pki, "gateway.crt"), TLSKey: filepath.Join(pki, "gateway.key"), TLSCA: filepath.Join(pki, "ca.crt"),
			NATSURL: nats.ClientURL(), LogLevel: "info", ShutdownTimeout: 5 * time.Second,
		},
		Upstreams: map[string]*url.URL{
			gatewayapp.AuthService: authURL, gatewayapp.UserService: upURL, gatewayapp.OrderService: upURL,
		},
		Tokens: service.TokenConfig{
			JWKSURL: authURL.JoinPath("/.well-known/jwks.json"), Issuer: public.String(), Audience: service.DefaultAudience,
		},
		RateLimits: gatewayapp.RateLimitConfig{Anonymous: high, Authenticated: high, Login: high, Token: high, Register: high},
		AccessLog:  accessLog,
		Runtime:    service.Overrides{APIListener: apiL, OpsListener: opsL, LogWriter: logf},
	}

	tok, err := sign(key, kid, public.String())
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- gatewayapp.Run(ctx, cfg) }()
	if err := waitReady(ctx, pki, public.String(), tok, runErr); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "token"), []byte(tok), 0o600); err != nil {
		return err
	}
	return <-runErr
}

// sign mints an access token the gateway accepts: ES256, typ at+jwt,
// the claims the auth service issues, valid for an hour.
func sign(key *ecdsa.PrivateKey, kid, issuer string) (string, error) {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": issuer, "sub": randomHex(16), "aud": service.DefaultAudience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": randomHex(16), "client_id": "rampart-demo", "scope": "openid orders:read", "roles": []string{"USER"},
	})
	t.Header["typ"] = "at+jwt"
	t.Header["kid"] = kid
	return t.SignedString(key)
}

// jwks renders the public key as a JWK set (RFC 7517/7518).
func jwks(pub *ecdsa.PublicKey, kid string) ([]byte, error) {
	raw, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, err
	}
	enc := base64.RawURLEncoding.EncodeToString
	return json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "x": enc(raw[1:33]), "y": enc(raw[33:65]), "kid": kid, "alg": "ES256", "use": "sig",
	}}})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitReady waits for the gateway's /readyz and checks that the token
// passes the whole path: the benchmark must measure answers of the
// upstream, never fast refusals.
func waitReady(ctx context.Context, pki, base, tok string, runErr <-chan error) error {
	pool, err := mtls.LoadPool(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-runErr:
			return fmt.Errorf("gateway stopped: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if status(ctx, c, base+"/readyz", "") == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("gateway not ready within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := status(ctx, c, base+"/api/v1/orders", tok); st != http.StatusOK {
		return fmt.Errorf("GET /api/v1/orders with the benchmark token → %d, want 200", st)
	}
	return nil
}

func status(ctx context.Context, c *http.Client, u, tok string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}
