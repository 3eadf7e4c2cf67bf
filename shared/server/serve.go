package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// Timeouts every listener uses unless the caller sets its own. The header
// timeout is what stops slowloris; the write timeout bounds a stuck client.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 32 << 10
)

// NewHTTPServer returns an http.Server with the platform timeouts, header
// limit and an error log routed to slog (TLS handshake failures land there
// at debug level; they are counted as security events elsewhere).
func NewHTTPServer(h http.Handler, tlsCfg *tls.Config, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Listener is one server bound to one socket.
type Listener struct {
	// Name appears in logs ("api", "ops", ...).
	Name string
	// Server serves; when Server.TLSConfig is set the listener speaks TLS.
	Server *http.Server
	// Listener is the bound socket (see Listen).
	Listener net.Listener
}

// Listen binds addr ("127.0.0.1:0" picks a free port). Binding before
// serving lets devstack learn every real address before any service starts.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// Serve serves every listener until ctx is done or one of them fails, then
// shuts all of them down gracefully: stop accepting, let in-flight requests
// finish within drain, then close what is left. It returns the first serve
// error, or nil after a clean shutdown.
func Serve(ctx context.Context, log *slog.Logger, drain time.Duration, ls ...Listener) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range ls {
		g.Go(func() error {
			log.Info("listening", slog.String("listener", l.Name), slog.String("addr", l.Listener.Addr().String()),
				slog.Bool("tls", l.Server.TLSConfig != nil))
			var err error
			if l.Server.TLSConfig != nil {
				// Certificates come from TLSConfig.GetCertificate (hot reload),
				// so no files are named here; ServeTLS also enables HTTP/2.
				err = l.Server.ServeTLS(l.Listener, "", "")
			} else {
				err = l.Server.Serve(l.Listener)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serve %s: %w", l.Name, err)
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
		defer cancel()
		var errs []error
		for _, l := range ls {
			if err := l.Server.Shutdown(sctx); err != nil {
				log.Warn("drain timed out, closing", slog.String("listener", l.Name), slog.Any("error", err))
				errs = append(errs, l.Server.Close())
			}
		}
		return errors.Join(errs...)
	})
	return g.Wait()
}
