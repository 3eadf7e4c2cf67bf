// Package edge is the gateway's public listener: TLS termination done by
// the gateway itself rather than by net/http, so that every HTTP/1
// connection's plaintext passes through the framing check (hygiene.Conn)
// while HTTP/2 connections are handed to net/http's HTTP/2 server as they
// are; plus the server settings (timeouts, header limit) and the optional
// plain-HTTP listener that only redirects.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/rampart-go/rampart/gateway/internal/hygiene"
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	Handler           http.Handler
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes is net/http's own limit, above which it answers 431
	// before any handler runs. Set it above the handler's limit so that
	// ordinary oversize requests are refused (and counted) by the handler.
	MaxHeaderBytes int
	Logger         *slog.Logger
}

// NewServer returns the public http.Server. Its TLSConfig stays nil: the
// listener (Listen) terminates TLS, and a nil TLSConfig makes Serve enable
// HTTP/2 for the *tls.Conn connections that negotiated "h2".
func NewServer(o ServerOptions) *http.Server {
	return &http.Server{
		Handler:           o.Handler,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ConnContext:       hygiene.ConnContext,
		// net/http would answer "OPTIONS *" itself without calling the
		// handler, leaving its framing verdict in the connection's queue
		// for the next request to take in place of its own (a CL+TE
		// request after it passed as clean). The handler refuses it.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			// Bounded per connection, as nginx and Envoy do by default.
			MaxConcurrentStreams: 128,
		},
	}
}

// Listener terminates TLS on accepted connections. Handshakes run
// concurrently (one slow client cannot stall Accept) within a deadline
// (no slowloris at the handshake), and at most maxHandshakes at a time.
// HTTP/1 connections come out wrapped in hygiene.Conn; HTTP/2 ones as the
// *tls.Conn net/http needs to recognise them.
type Listener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration
	log     *slog.Logger
	conns   chan net.Conn
	errc    chan error
	done    chan struct{}
	once    sync.Once
	slots   chan struct{}
}

const maxHandshakes = 1024

// Listen serves TLS on inner with cfg (which must offer "h2" and
// "http/1.1" in NextProtos for HTTP/2) and a handshake deadline. A nil cfg
// serves plain HTTP/1 (tests), still through the framing check.
func Listen(inner net.Listener, cfg *tls.Config, handshakeTimeout time.Duration, log *slog.Logger) net.Listener {
	if cfg == nil {
		return hygiene.Listener{Listener: inner}
	}
	l := &Listener{inner: inner, cfg: cfg, timeout: handshakeTimeout, log: log,
		conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{}),
		slots: make(chan struct{}, maxHandshakes)}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // transient (EMFILE and kin surface as timeouts)
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.done:
					return
				}
			}
			select {
			case l.errc <- err:
			case <-l.done:
			}
			return
		}
		backoff = 0
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			_ = c.Close()
			return
		}
		go l.handshake(c)
	}
}

func (l *Listener) handshake(c net.Conn) {
	defer func() { <-l.slots }()
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// Scanners and broken clients: worth a debug line, not an event
		// (the public edge asks for no client certificate to refuse).
		l.log.Debug("TLS handshake failed", slog.String("peer", c.RemoteAddr().String()), slog.Any("error", err))
		_ = c.Close()
		return
	}
	var out net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		out = &hygiene.Conn{Conn: tc}
	}
	select {
	case l.conns <- out:
	case <-l.done:
		_ = tc.Close()
	}
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Addr implements net.Listener.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// RedirectHandler answers every plain-HTTP request with a permanent
// redirect to the same path and query on public (308 keeps the method).
// The host is always public's, never the request's Host, so the listener
// cannot be used as an open redirect; paths that are not in origin form go
// to "/".
func RedirectHandler(public *url.URL) http.Handler {
	base := url.URL{Scheme: "https", Host: public.Host}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := "/"
		if len(r.RequestURI) > 0 && r.RequestURI[0] == '/' && len(r.RequestURI) <= 8<<10 {
			target = r.RequestURI
		}
		h := w.Header()
		h.Set("Connection", "close")
		h.Set("Cache-Control", "no-store")
		// Not http.Redirect: the scheme and host are fixed above, and only
		// the origin-form path and query are carried over.
		h.Set("Location", base.String()+target)
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// NewRedirectServer is the plain-HTTP server: short timeouts, small
// headers, nothing to serve but redirects.
func NewRedirectServer(public *url.URL, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           RedirectHandler(public),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
