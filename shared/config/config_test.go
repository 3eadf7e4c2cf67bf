package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/shared/config/configtest"
)

// TestReadCommon: each missing or malformed variable gives one line naming
// it; secrets are never echoed; insecure settings need RAMPART_INSECURE_DEV.
func TestReadCommon(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, value, want string
	}{
		{"a missing public URL is named", "RAMPART_PUBLIC_URL", "", "RAMPART_PUBLIC_URL: required but not set"},
		{"a relative public URL is refused", "RAMPART_PUBLIC_URL", "/x", "RAMPART_PUBLIC_URL: must be an absolute"},
		{"a plain-HTTP public URL is insecure", "RAMPART_PUBLIC_URL", "http://example.com", "RAMPART_PUBLIC_URL: plain-HTTP public URL refused"},
		{"a missing certificate is named", "RAMPART_TLS_CERT", "", "RAMPART_TLS_CERT: required but not set"},
		{"an unreadable key file is named", "RAMPART_TLS_KEY", "/nonexistent/key", "RAMPART_TLS_KEY: cannot read"},
		{"a missing CA is named", "RAMPART_TLS_CA", "", "RAMPART_TLS_CA: required but not set"},
		{"a missing database URL is named", "RAMPART_DATABASE_URL", "", "RAMPART_DATABASE_URL: required but not set"},
		{"an unknown database scheme is refused", "RAMPART_DATABASE_URL", "mysql://u:hunter2@h/db", "RAMPART_DATABASE_URL: must be an absolute"},
		{"PostgreSQL off loopback without sslmode is insecure", "RAMPART_DATABASE_URL", "postgres://u:hunter2@db.internal:5432/x", "RAMPART_DATABASE_URL: PostgreSQL to a non-loopback host without sslmode=verify-full refused"},
		{"PostgreSQL off loopback with sslmode=require is insecure", "RAMPART_DATABASE_URL", "postgresql://u:hunter2@db.internal/x?sslmode=require", "RAMPART_DATABASE_URL: PostgreSQL to a non-loopback host without sslmode=verify-full refused"},
		{"a host parameter cannot move PostgreSQL off loopback", "RAMPART_DATABASE_URL", "postgres://u:hunter2@127.0.0.1/x?host=db.internal&sslmode=disable", "RAMPART_DATABASE_URL: PostgreSQL to a non-loopback host without sslmode=verify-full refused"},
		{"a missing NATS URL is named", "RAMPART_NATS_URL", "", "RAMPART_NATS_URL: required but not set"},
		{"a malformed NATS URL does not echo its password", "RAMPART_NATS_URL", "nat://svc:hunter2@nats.internal:4222", "RAMPART_NATS_URL: must be an absolute nats or tls URL"},
		{"a malformed NATS URL does not echo its token", "RAMPART_NATS_URL", "nat://hunter2@nats.internal:4222", "RAMPART_NATS_URL: must be an absolute nats or tls URL (got \"nat://xxxxx@nats.internal:4222\")"},
		{"an unparsable OTLP URL does not echo its password", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://svc:hunter2@[collector", "OTEL_EXPORTER_OTLP_ENDPOINT: must be an absolute http or https URL"},
		{"plain NATS off loopback is insecure", "RAMPART_NATS_URL", "nats://nats.internal:4222", "RAMPART_NATS_URL: plain-text NATS"},
		{"client certificates cannot be turned off", "RAMPART_REQUIRE_CLIENT_CERT", "false", "RAMPART_REQUIRE_CLIENT_CERT: client certificates between services cannot be turned off"},
		{"a malformed boolean is named", "RAMPART_REQUIRE_CLIENT_CERT", "yes", "RAMPART_REQUIRE_CLIENT_CERT: must be 1, 0, true or false"},
		{"a bad log level is named", "RAMPART_LOG_LEVEL", "loud", "RAMPART_LOG_LEVEL: must be debug"},
		{"a bad shutdown timeout is named", "RAMPART_SHUTDOWN_TIMEOUT", "forever", "RAMPART_SHUTDOWN_TIMEOUT: must be a duration"},
		{"a bad listener address is named", "RAMPART_API_ADDR", "localhost", "RAMPART_API_ADDR: must be host:port"},
		{"a bad caller name is named", "RAMPART_ALLOWED_CALLERS", "gateway,Evil Service", "RAMPART_ALLOWED_CALLERS: must list service names"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := configtest.Env(t)
			if tc.value == "" {
				delete(env, tc.key)
			} else {
				env[tc.key] = tc.value
			}
			r := NewReader(MapLookup(env))
			ReadCommon(r, "svc", "127.0.0.1:1", "127.0.0.1:2", true)
			err := r.Err()
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.HasPrefix(ce.Problems[0], tc.want) {
				t.Fatalf("got %v, want one line starting %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("a secret was echoed: %v", err)
			}
		})
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	t.Parallel()
	r := NewReader(MapLookup(map[string]string{}))
	ReadCommon(r, "svc", "127.0.0.1:1", "127.0.0.1:2", true)
	var ce *Error
	if !errors.As(r.Err(), &ce) || len(ce.Problems) != 6 {
		t.Fatalf("got %v, want six problems", r.Err())
	}
}

func TestInsecureDevAllowsWithAWarning(t *testing.T) {
	t.Parallel()
	env := configtest.Env(t)
	env["RAMPART_NATS_URL"] = "nats://nats.internal:4222"
	env["RAMPART_INSECURE_DEV"] = "1"
	r := NewReader(MapLookup(env))
	c := ReadCommon(r, "svc", "127.0.0.1:1", "127.0.0.1:2", true)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings()) != 1 || !c.InsecureDev {
		t.Fatalf("warnings %v", r.Warnings())
	}
}

// TestInsecureDevCannotTurnOffClientCertificates: the one setting that
// RAMPART_INSECURE_DEV=1 does not relax — a service's caller identity is its
// certificate.
func TestInsecureDevCannotTurnOffClientCertificates(t *testing.T) {
	t.Parallel()
	env := configtest.Env(t)
	env["RAMPART_INSECURE_DEV"] = "1"
	env["RAMPART_REQUIRE_CLIENT_CERT"] = "false"
	r := NewReader(MapLookup(env))
	ReadCommon(r, "svc", "127.0.0.1:1", "127.0.0.1:2", true)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "RAMPART_REQUIRE_CLIENT_CERT: client certificates between services cannot be turned off") {
		t.Fatalf("got %v, want RAMPART_REQUIRE_CLIENT_CERT refused", err)
	}
}

// TestDatabaseURLsThatAreSafe: TLS with a verified server, or a database on
// this machine, needs no RAMPART_INSECURE_DEV.
func TestDatabaseURLsThatAreSafe(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"postgres://u@db.internal:5432/x?sslmode=verify-full&sslrootcert=/ca.crt",
		"postgres://u@db.internal/x?sslmode=verify-ca",
		"postgres://u@127.0.0.1:5432/x?sslmode=disable",
		"postgres://u@localhost/x",
		"postgres://u@[::1]/x?host=/var/run/postgresql",
		"sqlite://data/x.db",
	} {
		env := configtest.Env(t)
		env["RAMPART_DATABASE_URL"] = u
		r := NewReader(MapLookup(env))
		ReadCommon(r, "svc", "127.0.0.1:1", "127.0.0.1:2", true)
		if err := r.Err(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
