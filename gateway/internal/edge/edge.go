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
	"net/netip"
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

	mu        sync.Mutex
	perSource map[netip.Prefix]int // handshakes in progress per source
}

// maxHandshakes bounds the handshakes in progress (memory: a goroutine and
// a tls.Conn each, about 10 KiB before the first record arrives). When
// they are all taken Accept waits, and every new client with it.
const maxHandshakes = 4096

// maxHandshakesPerSource bounds one source's share (an IPv4 address or an
// IPv6 /64, as for rate limits) once half of all slots are taken. Without
// it one host opening maxHandshakes connections and saying nothing held
// every slot until the deadline, again and again: Accept stopped for
// everyone (a slowloris at the handshake). Below half, a source may take
// more: a benchmark or an address-translating load balancer opening
// hundreds of connections at once is not refused.
const maxHandshakesPerSource = 64

// Listen serves TLS on inner with cfg (which must offer "h2" and
// "http/1.1" in NextProtos for HTTP/2) and a handshake deadline. A nil cfg
// serves plain HTTP/1 (tests), still through the framing check.
func Listen(inner net.Listener, cfg *tls.Config, handshakeTimeout time.Duration, log *slog.Logger) net.Listener {
	if cfg == nil {
		return hygiene.Listener{Listener: inner}
	}
	l := &Listener{inner: inner, cfg: cfg, timeout: handshakeTimeout, log: log,
		conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{}),
		slots: make(chan struct{}, maxHandshakes), perSource: map[netip.Prefix]int{}}
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
		src, ok := l.enter(c)
		if !ok {
			l.log.Debug("TLS handshake refused: too many from one source", slog.String("peer", c.RemoteAddr().String()))
			_ = c.Close()
			continue
		}
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			l.leave(src)
			_ = c.Close()
			return
		}
		go l.handshake(c, src)
	}
}

// enter counts a handshake against its source, or reports that the
// source already has maxHandshakesPerSource in progress while half of
// all slots are taken.
func (l *Listener) enter(c net.Conn) (netip.Prefix, bool) {
	var src netip.Prefix
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a := ta.AddrPort().Addr().Unmap()
		bits := 32
		if a.Is6() {
			bits = 64
		}
		src, _ = a.WithZone("").Prefix(bits)
	}
	if !src.IsValid() {
		return src, true // not TCP (tests, a local socket): no source to count
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSource[src] >= maxHandshakesPerSource && len(l.slots) >= maxHandshakes/2 {
		return src, false
	}
	l.perSource[src]++
	return src, true
}

func (l *Listener) leave(src netip.Prefix) {
	if !src.IsValid() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSource[src]--; l.perSource[src] <= 0 {
		delete(l.perSource, src)
	}
}

func (l *Listener) handshake(c net.Conn, src netip.Prefix) {
	defer func() { <-l.slots; l.leave(src) }()
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
