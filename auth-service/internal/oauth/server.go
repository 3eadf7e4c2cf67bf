// Package oauth is the authorization server: the authorization-code flow
// with PKCE and its login form, the token endpoint (authorization_code,
// refresh_token, client_credentials and RFC 8693 token exchange), client
// authentication (none, client_secret_basic, client_secret_post,
// tls_client_auth), revocation, introspection, userinfo, RP-initiated logout
// and discovery.
//
// Where a choice exists, it takes the stricter one of Ory Hydra and
// Keycloak (docs/security.md lists them): PKCE S256 for every client,
// exact redirect-URI matching, single-use codes that revoke on replay,
// refresh-token rotation with family revocation, no implicit or password
// grants.
package oauth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/account"
	"github.com/rampart-go/rampart/auth-service/internal/keys"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/revocation"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/tokens"
)

// Config holds the server's lifetimes and names.
type Config struct {
	// Issuer is the public URL of the gateway, without a trailing slash.
	Issuer string
	// Audience of access tokens for the public API (rampart-api).
	Audience string
	// AccessTokenTTL: 10 minutes by default, at most 15 (CONTRACT §3).
	AccessTokenTTL time.Duration
	// ExchangeTokenTTL caps token-exchange tokens (default 5 minutes).
	ExchangeTokenTTL time.Duration
	// CodeTTL is the authorization-code lifetime (60 s at most).
	CodeTTL time.Duration
	// RefreshIdleTTL and RefreshMaxTTL: a refresh token unused for the
	// first, or a family older than the second, is dead.
	RefreshIdleTTL, RefreshMaxTTL time.Duration
	// SessionTTL is the browser session lifetime at this server.
	SessionTTL time.Duration
	// LoginRequestTTL is how long a login form stays valid.
	LoginRequestTTL time.Duration
	// TrustedProxy is the service identity whose X-Forwarded-For is
	// believed (the gateway).
	TrustedProxy string
	// Throttle limits login and token requests per client address.
	Throttle ThrottleOptions
	// ServiceThrottle limits token requests per calling service: a direct
	// mTLS peer other than TrustedProxy, authenticated by its certificate
	// before it is counted (default 6000 per minute, burst 1000). A service
	// acts for many users from one address — order-service exchanges a
	// token for each customer who places an order — so it cannot share
	// the per-address budget meant for one browser, and a compromised one
	// is still bounded.
	ServiceThrottle ThrottleOptions
}

func (c *Config) defaults() {
	if c.Audience == "" {
		c.Audience = "rampart-api"
	}
	if c.AccessTokenTTL <= 0 {
		c.AccessTokenTTL = 10 * time.Minute
	}
	if c.ExchangeTokenTTL <= 0 {
		c.ExchangeTokenTTL = 5 * time.Minute
	}
	if c.CodeTTL <= 0 || c.CodeTTL > time.Minute {
		c.CodeTTL = time.Minute
	}
	if c.RefreshIdleTTL <= 0 {
		c.RefreshIdleTTL = 24 * time.Hour
	}
	if c.RefreshMaxTTL <= 0 {
		c.RefreshMaxTTL = 30 * 24 * time.Hour
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 8 * time.Hour
	}
	if c.LoginRequestTTL <= 0 {
		c.LoginRequestTTL = 10 * time.Minute
	}
	if c.TrustedProxy == "" {
		c.TrustedProxy = "gateway"
	}
	if c.ServiceThrottle.PerMinute <= 0 {
		c.ServiceThrottle.PerMinute = 6000
	}
	if c.ServiceThrottle.Burst <= 0 {
		c.ServiceThrottle.Burst = 1000
	}
	c.Issuer = strings.TrimRight(c.Issuer, "/")
}

// Emitter records security events (secevent.Emitter).
type Emitter interface {
	Emit(ctx context.Context, ev secevent.Event)
}

// Deps are the server's collaborators.
type Deps struct {
	DB          *gorm.DB
	Keys        *keys.Manager
	Accounts    *account.Service
	Revocations *revocation.List
	Events      Emitter
	Logger      *slog.Logger
	Now         func() time.Time
	// Registerer, when set, receives the server's metrics (metrics.go):
	// the service's own registry, never the global one.
	Registerer prometheus.Registerer
}

// Server is the authorization server.
type Server struct {
	cfg      Config
	db       *gorm.DB
	keys     *keys.Manager
	accounts *account.Service
	revs     *revocation.List
	events   Emitter
	log      *slog.Logger
	now      func() time.Time
	access   *tokens.Verifier
	// accessOpts are access's options, for verifiers of other audiences.
	accessOpts tokens.Options
	throttle   *Throttle
	// services is the per-service token budget (Config.ServiceThrottle).
	services *Throttle
	pages    *template.Template
	metrics  *metrics // nil without a Registerer
}

// New builds the server. Access tokens presented to it (userinfo,
// revocation, introspection, token exchange) are checked with the same
// verifier every service uses, against our own keys.
func New(cfg Config, d Deps) (*Server, error) {
	cfg.defaults()
	s := &Server{
		cfg: cfg, db: d.DB, keys: d.Keys, accounts: d.Accounts, revs: d.Revocations,
		events: d.Events, log: d.Logger, now: d.Now,
		throttle: NewThrottle(cfg.Throttle),
		services: NewThrottle(cfg.ServiceThrottle),
		pages:    pages,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var revs tokens.Revocations
	if d.Revocations != nil {
		revs = d.Revocations
	}
	s.accessOpts = tokens.Options{
		Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: ownKeys{d.Keys}, Revocations: revs, Now: s.now,
	}
	v, err := tokens.NewVerifier(s.accessOpts)
	if err != nil {
		return nil, err
	}
	s.access = v
	if d.Registerer != nil {
		if s.metrics, err = newMetrics(d.Registerer, d.Keys, d.DB, s.now, s.log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ownKeys resolves kids against the manager's current key set.
type ownKeys struct{ m *keys.Manager }

func (k ownKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if pub, ok := k.m.PublicKeys()[kid]; ok {
		return pub, nil
	}
	return nil, tokens.ErrUnknownKey
}

// Routes mounts the OAuth and OIDC endpoints.
func (s *Server) Routes(r gin.IRouter) {
	r.GET("/.well-known/openid-configuration", s.discovery)
	r.GET("/oauth2/authorize", s.authorize)
	r.GET("/login", s.loginPage)
	r.POST("/login", s.loginSubmit)
	r.POST("/oauth2/token", s.token)
	r.POST("/oauth2/revoke", s.revoke)
	r.POST("/oauth2/introspect", s.introspect)
	r.GET("/oauth2/userinfo", s.userinfo)
	r.POST("/oauth2/userinfo", s.userinfo)
	r.GET("/oauth2/logout", s.logout)
	r.POST("/oauth2/logout", s.logout)
}

// Verifier returns the access-token verifier (for the admin API).
func (s *Server) Verifier() *tokens.Verifier { return s.access }

// emit records a security event with the request's context.
func (s *Server) emit(c *gin.Context, t secevent.Type, r secevent.Reason, subject, clientID string) {
	s.events.Emit(c.Request.Context(), secevent.Event{
		Type: t, Reason: r, Subject: subject, ClientID: clientID,
		ClientIP: s.clientIP(c.Request), Route: c.FullPath(), RequestID: server.RequestID(c),
	})
}

// clientIP is the address of the end user. Behind the gateway, the peer is
// the gateway and the user is the last X-Forwarded-For entry, which the
// gateway itself appended; from anyone else the header is ignored.
func (s *Server) clientIP(r *http.Request) string {
	if id, ok := mtls.PeerIdentity(r); ok && id == s.cfg.TrustedProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip := net.ParseIP(strings.TrimSpace(last)); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// peerCert returns the caller's verified client certificate and identity:
// only a direct mTLS caller has one that is its own (through the gateway
// the peer is the gateway).
func peerCert(r *http.Request) (*x509.Certificate, string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, "", false
	}
	cert := r.TLS.PeerCertificates[0]
	id, err := mtls.IdentityOf(cert)
	if err != nil {
		return nil, "", false
	}
	return cert, id, true
}

// randomToken returns 256 random bits, base64url-encoded.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hash is how secrets, codes, refresh tokens and session ids are stored:
// they are 256-bit random values, so SHA-256 is enough to make a database
// leak useless without slowing the hot path.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// noStore marks a response that carries tokens (RFC 6749 §5.1).
func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
}
