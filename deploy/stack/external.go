package stack

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/rampart-go/rampart/shared/natsx"
)

// External mode: the same binaries and per-service identities as docker
// compose, against a PostgreSQL and a NATS that someone else runs. The
// databases and roles are created by deploy/compose/postgres/
// init-databases.sh (the very script compose's PostgreSQL runs); NATS users
// come from the server's own configuration (deploy/compose/nats).

// DatabaseServices are the services with a database of their own.
var DatabaseServices = []string{Auth, User, Order}

// PostgresAdmin keys the PostgreSQL superuser's password in secrets.json
// (compose's POSTGRES_PASSWORD_FILE); devstack never uses it.
const PostgresAdmin = "postgres"

// PostgresRole is the role and the database of service on a server:
// "auth-service" → "auth_service", after prefix. init-databases.sh derives
// the same names.
func PostgresRole(prefix, service string) string {
	return prefix + strings.ReplaceAll(service, "-", "_")
}

// PostgresDSN turns base (postgres://host:port/…?sslmode=…, any user,
// password or database in it ignored) into service's URL: its own role and
// database, and its password read by the driver from passfile, so the URL
// itself carries no secret (compose passes it in the environment).
func PostgresDSN(base, prefix, service, passfile string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return "", fmt.Errorf("PostgreSQL URL must be postgres://host:port/…")
	}
	role := PostgresRole(prefix, service)
	u.User = url.User(role)
	u.Path = "/" + role
	q := u.Query()
	q.Set("passfile", passfile)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// PgpassLine is service's line for a libpq/pgx password file: any host,
// port and database, its own role.
func PgpassLine(prefix, service, password string) string {
	return fmt.Sprintf("*:*:*:%s:%s\n", PostgresRole(prefix, service), password)
}

// databaseURL is the RAMPART_DATABASE_URL Start gives service: a SQLite
// file under dir, or the external PostgreSQL.
func databaseURL(o Options, dir, service string) string {
	if o.Postgres == "" {
		return "sqlite://" + filepath.Join(dir, "data", service+".db")
	}
	// Validated by writePgpass before any service starts.
	dsn, _ := PostgresDSN(o.Postgres, o.PostgresPrefix, service, pgpassFile(dir, service))
	return dsn
}

func pgpassFile(dir, service string) string {
	return filepath.Join(dir, "postgres", service+".pgpass")
}

// writePgpass writes DIR/postgres/<service>.pgpass (0600) for every
// database service, and the passwords init-databases.sh reads
// (DIR/postgres/passwords/<service>).
func writePgpass(dir, prefix string, sec *secrets) error {
	pw := filepath.Join(dir, "postgres", "passwords")
	if err := os.MkdirAll(pw, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", pw, err)
	}
	for _, name := range DatabaseServices {
		if err := writeFile(pgpassFile(dir, name), []byte(PgpassLine(prefix, name, sec.PostgresPasswords[name])), 0o600); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(pw, name), []byte(sec.PostgresPasswords[name]), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// startBackends prepares the external PostgreSQL access files (Options.Postgres)
// and starts the embedded NATS server, or, with Options.NATSURL, records
// the external server's URL and returns nil.
func (s *Stack) startBackends(o Options, eo natsx.EmbeddedOptions) (*natsx.Embedded, error) {
	if o.Postgres != "" {
		if _, err := PostgresDSN(o.Postgres, o.PostgresPrefix, Auth, ""); err != nil {
			return nil, err
		}
		if o.child == nil { // a child's parent wrote them
			if err := writePgpass(s.Dir, o.PostgresPrefix, s.secrets); err != nil {
				return nil, err
			}
		}
	}
	if o.NATSURL != "" {
		u, err := url.Parse(o.NATSURL)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			return nil, fmt.Errorf("NATS URL must be nats://host:port or tls://host:port")
		}
		s.natsURL = o.NATSURL
		return nil, nil
	}
	return natsx.StartEmbedded(eo)
}

// natsClientURL is the URL services dial.
func (s *Stack) natsClientURL() string {
	if s.NATS == nil {
		return s.natsURL
	}
	return s.NATS.ClientURL()
}

// writeFile writes data to path atomically with mode.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil { //nolint:gosec // paths under devstack's own state directory
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
