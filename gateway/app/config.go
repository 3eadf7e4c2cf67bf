package app

import (
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rampart-go/rampart/gateway/internal/ratelimit"
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/service"
)

// Name is the gateway's service identity.
const Name = "gateway"

// Config is everything Run needs. Zero values of the edge settings take
// the defaults documented on each field, so devstack and tests only set
// what they mean to change.
type Config struct {
	config.Common
	// Upstreams maps a service name to its mTLS API base URL
	// (RAMPART_UPSTREAM_AUTH_URL, _USER_URL, _ORDER_URL).
	Upstreams map[string]*url.URL
	// UpstreamTimeout bounds one upstream exchange up to its response
	// headers (RAMPART_UPSTREAM_TIMEOUT, default 15s).
	UpstreamTimeout time.Duration
	// Tokens is where the verifier finds keys and what it expects
	// (RAMPART_JWKS_URL, RAMPART_TOKEN_ISSUER, RAMPART_TOKEN_AUDIENCE).
	Tokens service.TokenConfig
	// TokenCacheSize bounds the verified-token cache
	// (RAMPART_TOKEN_CACHE_SIZE, default 100000; -1 disables it).
	TokenCacheSize int

	// TrustedProxies are the peers whose X-Forwarded-For is believed
	// (RAMPART_TRUSTED_PROXIES, CIDRs; none by default).
	TrustedProxies []netip.Prefix
	// TrustClientTrace keeps a W3C traceparent/tracestate/baggage sent by
	// an untrusted client (RAMPART_TRUST_CLIENT_TRACE, default false: the
	// edge starts a fresh trace, so callers cannot pick trace ids or
	// force sampling).
	TrustClientTrace bool

	// Edge limits (RAMPART_MAX_URL_BYTES 8192, RAMPART_MAX_HEADER_BYTES
	// 16384, RAMPART_MAX_HEADER_COUNT 100, RAMPART_MAX_BODY_BYTES 1 MiB,
	// RAMPART_MAX_FORM_BODY_BYTES 64 KiB).
	MaxURLBytes, MaxHeaderBytes, MaxHeaderCount int
	MaxBodyBytes, MaxFormBodyBytes              int64
	// Server timeouts (RAMPART_READ_HEADER_TIMEOUT 5s, also the TLS
	// handshake bound; RAMPART_READ_TIMEOUT 30s; RAMPART_WRITE_TIMEOUT
	// 60s; RAMPART_IDLE_TIMEOUT 120s).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	// RateLimits: RAMPART_RATELIMIT_ANONYMOUS (per address, default
	// 20/s:40), _AUTHENTICATED (per subject, 50/s:100), _LOGIN (per
	// address on /login, 10/m:10), _TOKEN (/oauth2/token, 60/m:30),
	// _REGISTER (/api/v1/auth/register, 5/m:5).
	RateLimits RateLimitConfig
	// RateLimitMaxKeys bounds the in-memory limiter
	// (RAMPART_RATELIMIT_MAX_KEYS, default 262144 keys).
	RateLimitMaxKeys int
	// Redis, when set, shares rate limits between replicas
	// (RAMPART_REDIS_URL: redis://, or rediss:// for TLS).
	Redis *redis.Options

	// BreakerThreshold consecutive failures open an upstream's circuit
	// for BreakerOpenFor (RAMPART_BREAKER_THRESHOLD 5,
	// RAMPART_BREAKER_OPEN_FOR 5s).
	BreakerThreshold int
	BreakerOpenFor   time.Duration

	// CORSOrigins may call the API from a browser (RAMPART_CORS_ORIGINS,
	// exact origins; none by default).
	CORSOrigins []string
	// RedirectAddr, when set, is a plain-HTTP listener that only redirects
	// to the public URL (RAMPART_HTTP_REDIRECT_ADDR; none by default).
	RedirectAddr string
	// AccessLog writes one JSON line per request (RAMPART_ACCESS_LOG,
	// default true).
	AccessLog *bool

	// Runtime holds what tests and devstack inject.
	Runtime service.Overrides
	// RedirectListener, when set, is used instead of binding RedirectAddr.
	RedirectListener net.Listener
}

// RateLimitConfig are the configurable limits, each "<n>/<s|m|h>[:<burst>]"
// (n requests per second, minute or hour; burst at once, default n).
// Empty fields take the defaults.
type RateLimitConfig struct {
	Anonymous, Authenticated, Login, Token, Register string
}

// Default limits (see Config.RateLimits).
const (
	DefaultAnonymousLimit     = "20/s:40"
	DefaultAuthenticatedLimit = "50/s:100"
	DefaultLoginLimit         = "10/m:10"
	DefaultTokenLimit         = "60/m:30"
	DefaultRegisterLimit      = "5/m:5"
)

// Upstream service names, as in their certificates.
const (
	AuthService  = "auth-service"
	UserService  = "user-service"
	OrderService = "order-service"
)

// LoadConfig reads and validates the environment, reporting every problem at once.
func LoadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	cfg := Config{
		Common:    config.ReadCommon(r, Name, "127.0.0.1:8443", "127.0.0.1:9181", false),
		Upstreams: map[string]*url.URL{},
	}
	for name, env := range map[string]string{
		AuthService:  "RAMPART_UPSTREAM_AUTH_URL",
		UserService:  "RAMPART_UPSTREAM_USER_URL",
		OrderService: "RAMPART_UPSTREAM_ORDER_URL",
	} {
		u := r.URL(env, "", "https")
		if u == nil {
			r.Fail(env, "required (https URL of the "+name+" API)")
			continue
		}
		cfg.Upstreams[name] = u
	}
	cfg.UpstreamTimeout = r.Duration("RAMPART_UPSTREAM_TIMEOUT", 15*time.Second, 100*time.Millisecond, 2*time.Minute)
	cfg.Tokens = service.ReadTokenConfig(r, cfg.Common)
	cfg.TokenCacheSize = r.Int("RAMPART_TOKEN_CACHE_SIZE", 100_000, -1, 10_000_000)

	cfg.TrustedProxies = r.CIDRs("RAMPART_TRUSTED_PROXIES")
	for _, p := range cfg.TrustedProxies {
		// Trusting every address makes X-Forwarded-For the client's own
		// word: it would pick its rate-limit budget (login and token
		// throttles included) and the address in every event and log.
		r.Insecure("RAMPART_TRUSTED_PROXIES", p.Bits() == 0, "trusting every address ("+p.String()+")")
	}
	cfg.TrustClientTrace = r.Bool("RAMPART_TRUST_CLIENT_TRACE", false)

	cfg.MaxURLBytes = r.Int("RAMPART_MAX_URL_BYTES", 8<<10, 256, 64<<10)
	cfg.MaxHeaderBytes = r.Int("RAMPART_MAX_HEADER_BYTES", 16<<10, 1<<10, 48<<10)
	cfg.MaxHeaderCount = r.Int("RAMPART_MAX_HEADER_COUNT", 100, 10, 1000)
	cfg.MaxBodyBytes = int64(r.Int("RAMPART_MAX_BODY_BYTES", 1<<20, 1<<10, 1<<30))
	cfg.MaxFormBodyBytes = int64(r.Int("RAMPART_MAX_FORM_BODY_BYTES", 64<<10, 1<<10, 16<<20))
	cfg.ReadHeaderTimeout = r.Duration("RAMPART_READ_HEADER_TIMEOUT", 5*time.Second, 100*time.Millisecond, time.Minute)
	cfg.ReadTimeout = r.Duration("RAMPART_READ_TIMEOUT", 30*time.Second, time.Second, 10*time.Minute)
	cfg.WriteTimeout = r.Duration("RAMPART_WRITE_TIMEOUT", 60*time.Second, time.Second, 30*time.Minute)
	cfg.IdleTimeout = r.Duration("RAMPART_IDLE_TIMEOUT", 120*time.Second, time.Second, time.Hour)

	for _, l := range cfg.RateLimits.fields() {
		*l.dst = r.String(l.env, l.def)
		if _, err := ratelimit.ParseLimit(l.name, *l.dst); err != nil {
			r.Fail(l.env, err.Error())
		}
	}
	cfg.RateLimitMaxKeys = r.Int("RAMPART_RATELIMIT_MAX_KEYS", 1<<18, 1<<10, 1<<24)
	if v := r.String("RAMPART_REDIS_URL", ""); v != "" {
		// The URL may hold a password: never echo it.
		opts, err := redis.ParseURL(v)
		if err != nil {
			r.Fail("RAMPART_REDIS_URL", "must be a redis:// or rediss:// URL")
		} else {
			r.Insecure("RAMPART_REDIS_URL", opts.TLSConfig == nil && !loopbackAddr(opts.Addr), "plain-text Redis to a non-loopback host")
			cfg.Redis = opts
		}
	}

	cfg.BreakerThreshold = r.Int("RAMPART_BREAKER_THRESHOLD", 5, 1, 1000)
	cfg.BreakerOpenFor = r.Duration("RAMPART_BREAKER_OPEN_FOR", 5*time.Second, 100*time.Millisecond, 10*time.Minute)

	for _, o := range r.List("RAMPART_CORS_ORIGINS", nil) {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			r.Fail("RAMPART_CORS_ORIGINS", "must list exact origins such as https://app.example.com (got "+quote(o)+")")
			continue
		}
		r.Insecure("RAMPART_CORS_ORIGINS", u.Scheme == "http" && !loopbackAddr(u.Host), "a plain-HTTP origin")
		cfg.CORSOrigins = append(cfg.CORSOrigins, o)
	}
	if v := r.String("RAMPART_HTTP_REDIRECT_ADDR", ""); v != "" {
		cfg.RedirectAddr = r.Addr("RAMPART_HTTP_REDIRECT_ADDR", v)
	}
	accessLog := r.Bool("RAMPART_ACCESS_LOG", true)
	cfg.AccessLog = &accessLog
	return cfg, r.Err()
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + s + `"`
}

func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// withDefaults fills the zero edge settings of a Config built in code
// (devstack, tests) with LoadConfig's defaults.
func (c Config) withDefaults() Config {
	setI := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setI(&c.MaxURLBytes, 8<<10)
	setI(&c.MaxHeaderBytes, 16<<10)
	setI(&c.MaxHeaderCount, 100)
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxFormBodyBytes == 0 {
		c.MaxFormBodyBytes = 64 << 10
	}
	setD(&c.UpstreamTimeout, 15*time.Second)
	setD(&c.ReadHeaderTimeout, 5*time.Second)
	setD(&c.ReadTimeout, 30*time.Second)
	setD(&c.WriteTimeout, 60*time.Second)
	setD(&c.IdleTimeout, 120*time.Second)
	setI(&c.TokenCacheSize, 100_000)
	setI(&c.RateLimitMaxKeys, 1<<18)
	setI(&c.BreakerThreshold, 5)
	setD(&c.BreakerOpenFor, 5*time.Second)
	for _, l := range c.RateLimits.fields() {
		if *l.dst == "" {
			*l.dst = l.def
		}
	}
	if c.AccessLog == nil {
		on := true
		c.AccessLog = &on
	}
	return c
}

type limitField struct {
	env, name, def string
	dst            *string
}

func (rl *RateLimitConfig) fields() []limitField {
	return []limitField{
		{"RAMPART_RATELIMIT_ANONYMOUS", "anonymous", DefaultAnonymousLimit, &rl.Anonymous},
		{"RAMPART_RATELIMIT_AUTHENTICATED", "authenticated", DefaultAuthenticatedLimit, &rl.Authenticated},
		{"RAMPART_RATELIMIT_LOGIN", "login", DefaultLoginLimit, &rl.Login},
		{"RAMPART_RATELIMIT_TOKEN", "token", DefaultTokenLimit, &rl.Token},
		{"RAMPART_RATELIMIT_REGISTER", "register", DefaultRegisterLimit, &rl.Register},
	}
}
