package mtls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Reloader serves a certificate and key from files and picks up
// replacements without a restart: short-lived certificates are only
// practical if rotating them costs nothing.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	current           atomic.Pointer[tls.Certificate]
	digest            atomic.Pointer[[32]byte]
}

// NewReloader loads the pair now and fails if it is unusable.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads both files. A pair that does not parse or does not match
// (say, the key was replaced and the certificate not yet) is refused and the
// current certificate stays in service.
func (r *Reloader) Reload() error {
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	sum := sha256.Sum256(append(append([]byte{}, certPEM...), keyPEM...))
	if d := r.digest.Load(); d != nil && bytes.Equal(d[:], sum[:]) {
		return nil // unchanged
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load key pair %s: %w", r.certFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("parse certificate %s: %w", r.certFile, err)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("certificate %s expired at %s", r.certFile, leaf.NotAfter.Format(time.RFC3339))
	}
	// Not yet valid is as useless as expired: every peer would refuse it
	// until NotBefore (crypto/x509 allows no leeway), so swapping it in
	// would cut this service off while the current pair still works.
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("certificate %s not valid before %s", r.certFile, leaf.NotBefore.Format(time.RFC3339))
	}
	pair.Leaf = leaf
	prev := r.current.Swap(&pair)
	r.digest.Store(&sum)
	if prev != nil {
		r.log.Info("certificate reloaded", slog.String("file", r.certFile),
			slog.String("serial", leaf.SerialNumber.Text(16)), slog.Time("not_after", leaf.NotAfter))
	}
	return nil
}

// Run polls the files every interval until ctx ends. Polling (rather than
// inotify) works the same for Kubernetes secret mounts, whose files are
// swapped by symlink.
func (r *Reloader) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Reload(); err != nil {
				r.log.Warn("certificate reload refused; keeping the current one", slog.Any("error", err))
			}
		}
	}
}

// Certificate returns the pair in service.
func (r *Reloader) Certificate() *tls.Certificate { return r.current.Load() }

// GetCertificate serves the current pair to a TLS server.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current.Load(), nil
}

// GetClientCertificate serves the current pair to a TLS client.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current.Load(), nil
}
