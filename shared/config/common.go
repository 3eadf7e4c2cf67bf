package config

import (
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Common is what every service reads.
type Common struct {
	// Service is the service name, set by the caller.
	Service string
	// APIAddr and OpsAddr are the listener addresses (RAMPART_API_ADDR,
	// RAMPART_OPS_ADDR).
	APIAddr, OpsAddr string
	// PublicURL is the gateway's public https URL (RAMPART_PUBLIC_URL), the
	// token issuer.
	PublicURL *url.URL
	// TLSCert, TLSKey and TLSCA are this service's certificate, key and the
	// CA bundle service certificates chain to (RAMPART_TLS_*).
	TLSCert, TLSKey, TLSCA string
	// DatabaseURL is sqlite://path or postgres://… (RAMPART_DATABASE_URL).
	DatabaseURL string
	// NATSURL is tls://… or, on loopback, nats://… (RAMPART_NATS_URL).
	NATSURL string
	// NATSUser and NATSPassword are this service's NATS credentials.
	NATSUser, NATSPassword string
	// AllowedCallers are the service names allowed to call this service's
	// API over mTLS (RAMPART_ALLOWED_CALLERS).
	AllowedCallers []string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout time.Duration
	// OTLPEndpoint is OTEL_EXPORTER_OTLP_ENDPOINT.
	OTLPEndpoint string
	// InsecureDev is RAMPART_INSECURE_DEV.
	InsecureDev bool
}

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ReadCommon reads the variables every service shares. needDB makes
// RAMPART_DATABASE_URL required.
func ReadCommon(r *Reader, service, defaultAPIAddr, defaultOpsAddr string, needDB bool) Common {
	c := Common{Service: service, InsecureDev: r.InsecureDev()}
	c.APIAddr = r.Addr("RAMPART_API_ADDR", defaultAPIAddr)
	c.OpsAddr = r.Addr("RAMPART_OPS_ADDR", defaultOpsAddr)

	if r.Required("RAMPART_PUBLIC_URL") != "" {
		c.PublicURL = r.URL("RAMPART_PUBLIC_URL", "", "https", "http")
		if c.PublicURL != nil {
			r.Insecure("RAMPART_PUBLIC_URL", c.PublicURL.Scheme == "http", "plain-HTTP public URL")
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"RAMPART_TLS_CERT", &c.TLSCert}, {"RAMPART_TLS_KEY", &c.TLSKey}, {"RAMPART_TLS_CA", &c.TLSCA}} {
		if r.Required(f.name) != "" {
			*f.dst = r.File(f.name, "")
		}
	}

	if needDB {
		if v := r.Required("RAMPART_DATABASE_URL"); v != "" {
			u := r.URL("RAMPART_DATABASE_URL", "", "sqlite", "postgres", "postgresql")
			if u == nil {
				// sqlite://relative/path has the first segment as host; an
				// absolute sqlite:///path has none. Accept both shapes.
				if pu, err := url.Parse(v); err == nil && pu.Scheme == "sqlite" && pu.Path != "" {
					r.problems = without(r.problems, "RAMPART_DATABASE_URL")
					u = pu
				}
			}
			if u != nil {
				c.DatabaseURL = v
				if u.Scheme != "sqlite" {
					r.Insecure("RAMPART_DATABASE_URL", PostgresUnverified(u),
						"PostgreSQL to a non-loopback host without sslmode=verify-full")
				}
			}
		}
	}

	if r.Required("RAMPART_NATS_URL") != "" {
		if u := r.URL("RAMPART_NATS_URL", "", "nats", "tls"); u != nil {
			c.NATSURL = u.String()
			r.Insecure("RAMPART_NATS_URL", u.Scheme == "nats" && !loopback(u.Hostname()), "plain-text NATS to a non-loopback host")
		}
	}
	c.NATSUser = r.String("RAMPART_NATS_USER", "")
	c.NATSPassword = r.String("RAMPART_NATS_PASSWORD", "")
	if (c.NATSUser == "") != (c.NATSPassword == "") {
		r.Fail("RAMPART_NATS_PASSWORD", "RAMPART_NATS_USER and RAMPART_NATS_PASSWORD must be set together")
	}

	c.AllowedCallers = r.List("RAMPART_ALLOWED_CALLERS", nil)
	for _, n := range c.AllowedCallers {
		if !serviceName.MatchString(n) {
			r.bad("RAMPART_ALLOWED_CALLERS", n, "must list service names ([a-z][a-z0-9-]*)")
		}
	}
	// Service APIs always require a client certificate: the caller's
	// identity is the certificate (shared/service.APITLS), and no setting,
	// not even RAMPART_INSECURE_DEV=1, turns that off. The variable is
	// still read so that a "false" left in an environment fails loudly
	// instead of being silently ignored.
	if !r.Bool("RAMPART_REQUIRE_CLIENT_CERT", true) {
		r.Fail("RAMPART_REQUIRE_CLIENT_CERT", "client certificates between services cannot be turned off")
	}

	c.LogLevel = r.String("RAMPART_LOG_LEVEL", "info")
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.bad("RAMPART_LOG_LEVEL", c.LogLevel, "must be debug, info, warn or error")
	}
	c.ShutdownTimeout = r.Duration("RAMPART_SHUTDOWN_TIMEOUT", 15*time.Second, time.Second, 5*time.Minute)
	if u := r.URL("OTEL_EXPORTER_OTLP_ENDPOINT", "", "http", "https"); u != nil {
		c.OTLPEndpoint = u.String()
	}
	return c
}

// PostgresUnverified reports whether u may talk to a PostgreSQL server off
// this machine without TLS that verifies the server. Without an explicit
// sslmode, pgx (like libpq) uses "prefer": TLS without any certificate
// check, and plain text when the server (or anyone in the path) declines
// it, so the password exchange and every row are exposed. Only verify-ca
// and verify-full authenticate the server. Every spelling pgx honours
// counts: repeated sslmode parameters, the ssl=true alias (which means
// "require"), host= parameters that override the URL's host, and service=
// (settings from a file we cannot see).
func PostgresUnverified(u *url.URL) bool {
	q := u.Query()
	modes := q["sslmode"]
	verified := len(modes) > 0 && !q.Has("ssl")
	for _, m := range modes {
		if m != "verify-full" && m != "verify-ca" {
			verified = false
		}
	}
	if verified {
		return false
	}
	if q.Has("service") {
		return true
	}
	hosts := strings.Split(u.Host, ",")
	for _, h := range q["host"] {
		hosts = append(hosts, strings.Split(h, ",")...)
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" || strings.HasPrefix(h, "/") {
			continue // the URL's own host is absent, or a Unix socket directory
		}
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if !loopback(strings.Trim(h, "[]")) {
			return true
		}
	}
	return false
}

func without(m map[string]string, k string) map[string]string {
	delete(m, k)
	return m
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
