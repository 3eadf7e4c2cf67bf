package stack

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/rampart-go/rampart/shared/audit"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

// AuditName is the audit trail's name among the stack's processes (for
// StopService and error reports).
const AuditName = "audit"

// AuditDatabaseURL is where Start's audit trail (Options.Audit) keeps its
// table: DIR/data/audit.db, for `go run ./deploy/cmd/audit verify --db …`.
func AuditDatabaseURL(dir string) string {
	return "sqlite://" + filepath.Join(dir, "data", "audit.db")
}

// runAudit is the audit trail (shared/audit) as devstack runs it: the
// embedded NATS's read-only ops user, which may read every stream and call
// the JetStream API but publish nothing, and a SQLite file of its own — the
// same audit.Serve that `deploy/cmd/audit run` calls.
func (s *Stack) runAudit(ctx context.Context, logw io.Writer) error {
	pool, err := mtls.LoadPool(s.Endpoints.CAFile)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(logw, nil)).With(slog.String("service", AuditName))
	return audit.Serve(ctx, audit.ServeOptions{
		NATS: natsx.Options{
			URL: s.natsClientURL(), Name: AuditName, User: OpsUser, Password: s.secrets.NATSPasswords[OpsUser],
			TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		},
		DatabaseURL: AuditDatabaseURL(s.Dir),
		Trail:       audit.Options{Logger: log},
	})
}
