package stack

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/rampart-go/rampart/shared/mtls"
)

// PrepareOptions configure Prepare.
type PrepareOptions struct {
	// CertValidity is the lifetime of the service certificates (default
	// 24h). A certificate is reissued when less than a third is left.
	CertValidity time.Duration
	// Compose also lays out one directory per container under
	// DIR/compose, each holding only what that container may read (see
	// ComposeDir).
	Compose bool
}

// Hosts that certificates name besides the service's own name. The CA's
// name constraints permit *.rampart.local, so PostgreSQL is reached as
// postgres.rampart.local (a compose network alias).
const (
	NATSHost     = "nats"
	PostgresHost = "postgres.rampart.local"
	postgresName = "postgres"
)

// Prepare creates, or brings up to date, the state that Start and docker
// compose's services use: the dev CA and a certificate per service, NATS
// and PostgreSQL (DIR/pki), generated passwords (DIR/secrets.json) and the
// demo credentials (DIR/credentials.json). It is idempotent: a second run
// keeps the CA, the passwords and the credentials and reissues only
// certificates close to expiry. It is the compose `init` service (`devstack
// init`).
func Prepare(dir string, o PrepareOptions) error {
	if o.CertValidity <= 0 {
		o.CertValidity = 24 * time.Hour
	}
	pki := filepath.Join(dir, "pki")
	for _, d := range []string{dir, pki} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	ca, err := mtls.EnsureCA(pki)
	if err != nil {
		return fmt.Errorf("dev CA: %w", err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	leaves := map[string][]string{NATSHost: {"localhost", NATSHost}, postgresName: {"localhost", PostgresHost}, OpsUser: {OpsUser + ".rampart.local"}}
	for _, name := range Services {
		leaves[name] = []string{"localhost", name}
	}
	for name, dns := range leaves {
		if _, _, err := ca.EnsureLeaf(pki, name, dns, ips, o.CertValidity); err != nil {
			return fmt.Errorf("certificate for %s: %w", name, err)
		}
	}
	sec, err := loadSecrets(filepath.Join(dir, "secrets.json"))
	if err != nil {
		return err
	}
	if _, err := ensureCredentials(filepath.Join(dir, "credentials.json")); err != nil {
		return err
	}
	// The passwords init-databases.sh reads, for an external PostgreSQL.
	if err := writePgpass(dir, "", sec); err != nil {
		return err
	}
	if o.Compose {
		return layoutCompose(dir, sec)
	}
	return nil
}

// ComposeDir is the directory under a Prepare'd DIR that container name
// mounts (a volume subpath, read-only) at /rampart/secrets: a Rampart
// service, "nats", "postgres" or "ops". Each holds ca.crt, tls.crt and
// tls.key; database services also pgpass; auth-service credentials.json (its
// seed file); postgres admin-password and passwords/<service> (read by
// init-databases.sh). No container sees another's key or password, nor the
// CA key.
func ComposeDir(dir, name string) string { return filepath.Join(dir, "compose", name) }

func layoutCompose(dir string, sec *secrets) error {
	pki := filepath.Join(dir, "pki")
	names := append(append([]string{}, Services...), NATSHost, postgresName, OpsUser)
	for _, name := range names {
		cd := ComposeDir(dir, name)
		if err := os.MkdirAll(cd, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", cd, err)
		}
		for src, dst := range map[string]string{"ca.crt": "ca.crt", name + ".crt": "tls.crt", name + ".key": "tls.key"} {
			if err := copyFile(filepath.Join(pki, src), filepath.Join(cd, dst)); err != nil {
				return err
			}
		}
	}
	for _, name := range DatabaseServices {
		if err := writeFile(filepath.Join(ComposeDir(dir, name), "pgpass"), []byte(PgpassLine("", name, sec.PostgresPasswords[name])), 0o600); err != nil {
			return err
		}
	}
	if err := copyFile(filepath.Join(dir, "credentials.json"), filepath.Join(ComposeDir(dir, Auth), "credentials.json")); err != nil {
		return err
	}
	pg := ComposeDir(dir, postgresName)
	if err := os.MkdirAll(filepath.Join(pg, "passwords"), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", pg, err)
	}
	if err := writeFile(filepath.Join(pg, "admin-password"), []byte(sec.PostgresPasswords[PostgresAdmin]), 0o600); err != nil {
		return err
	}
	for _, name := range DatabaseServices {
		if err := writeFile(filepath.Join(pg, "passwords", name), []byte(sec.PostgresPasswords[name]), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies src to dst atomically, keeping src's permission bits.
func copyFile(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return writeFile(dst, b, fi.Mode().Perm())
}
