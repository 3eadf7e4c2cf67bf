// Package h1transport is the gateway's client for its upstreams: HTTP/1.1
// over pooled (mutual-)TLS connections, with each request written and its
// answer read on the calling goroutine.
//
// Why not net/http's Transport alone. http.Transport runs a read-loop and a
// write-loop goroutine per connection and hands every request and every
// response between them and the caller over channels: three to four
// goroutine wake-ups per exchange, and a read tried and parked in the poller
// on each side. On the gateway's hot path that scheduling costs as much as
// the TLS records themselves (docs/PERFORMANCE.md). Here the caller writes
// the request (one TLS record, one write(2)) and reads the answer itself.
//
// Only bodiless GET and HEAD requests take this path — most API traffic,
// and the requests that can be replayed safely on a fresh connection when a
// pooled one turns out to have been closed by the upstream while idle.
// Everything else goes to Fallback (a standard http.Transport): a request
// with a body must be sent while the answer is already being read (an
// upstream may answer 413 before reading the body), and 100-continue,
// upgrades and non-idempotent methods are its business.
//
// The wire format is net/http's own: requests are written by
// http.Request.Write and answers parsed by http.ReadResponse, exactly as
// http.Transport does, so framing (Content-Length, chunked, trailers, HEAD,
// 204/304) is the standard library's, not ours.
package h1transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Options configure a Transport; zero values take the defaults.
type Options struct {
	// TLS is the client configuration for https upstreams (client
	// certificate and the check of the server's identity included). Each
	// connection uses it as given, so its VerifyConnection runs on every
	// handshake.
	TLS *tls.Config
	// Fallback carries every request this transport does not (bodies,
	// methods other than GET and HEAD). Required.
	Fallback http.RoundTripper
	// MaxIdlePerHost bounds the idle pool per upstream address (default
	// 256); a connection put back beyond it is closed.
	MaxIdlePerHost int
	// IdleTimeout closes connections idle for longer (default 90s, below
	// the services' 120s so we close first, not the upstream).
	IdleTimeout time.Duration
	// DialTimeout bounds the TCP connect and the TLS handshake together
	// (default 5s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the answer's head once the
	// request is written (default 30s); the request context's deadline,
	// when earlier, wins.
	ResponseHeaderTimeout time.Duration
	// MaxResponseHeaderBytes bounds the answer's head (default 1 MiB).
	MaxResponseHeaderBytes int64
}

// Transport is an http.RoundTripper; see the package comment. It is safe
// for concurrent use.
type Transport struct {
	o      Options
	dialer *tls.Dialer
	plain  *net.Dialer

	mu      sync.Mutex
	idle    map[string][]*conn // per address, oldest first: the newest is reused first
	janitor *time.Timer
	closed  bool
}

// New returns a Transport. It panics without a Fallback, a programming
// error caught by the first test.
func New(o Options) *Transport {
	if o.Fallback == nil {
		panic("h1transport: Options.Fallback is required")
	}
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 256
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 30 * time.Second
	}
	if o.MaxResponseHeaderBytes <= 0 {
		o.MaxResponseHeaderBytes = 1 << 20
	}
	nd := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &Transport{
		o:      o,
		plain:  nd,
		dialer: &tls.Dialer{NetDialer: nd, Config: o.TLS},
		idle:   make(map[string][]*conn),
	}
}

// maxInterim is how many 1xx answers may precede the final one (as
// net/http's client allows).
const maxInterim = 5

// errUpgrade: a 101 on a request that asked for no upgrade; the gateway
// refuses upgrades before proxying, so this is an upstream fault.
var errUpgrade = errors.New("h1transport: unexpected 101 Switching Protocols")

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !direct(req) {
		return t.o.Fallback.RoundTrip(req)
	}
	if err := validHeader(req.Header); err != nil {
		return nil, err
	}
	addr, err := address(req)
	if err != nil {
		return nil, err
	}
	ctx := req.Context()
	for {
		c, reused, err := t.get(ctx, addr, req.URL.Scheme)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		// A pooled connection the upstream closed while it sat idle fails
		// before a byte of an answer arrives. The request is safe and has
		// no body, so it goes again — on the next pooled connection or a
		// fresh one; a fresh connection's failure is final.
		if reused && c.lc.read == 0 && ctx.Err() == nil && !isTimeout(err) {
			continue
		}
		return nil, err
	}
}

// direct reports whether req takes this transport's own path.
func direct(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) && !req.Close &&
		(req.URL.Scheme == "https" || req.URL.Scheme == "http")
}

// exchange writes req on c and reads the answer's head. On success the
// response body owns c: reading it to the end returns c to the pool.
func (t *Transport) exchange(c *conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	deadline, hasDeadline := ctx.Deadline()
	head := time.Now().Add(t.o.ResponseHeaderTimeout)
	if hasDeadline && deadline.Before(head) {
		head = deadline
	}
	if err := c.nc.SetDeadline(head); err != nil {
		return nil, err
	}
	// A cancelled request (the client left) interrupts the exchange by
	// moving the deadline into the past; stop reports whether that
	// happened, and a connection it touched is never reused.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if hasDeadline && !time.Now().Before(deadline) {
			// The connection's deadline is the context's and may fire a
			// moment before the context's own timer.
			return nil, context.DeadlineExceeded
		}
		return nil, err
	}

	c.lc.read = 0
	if err := req.Write(c.bw); err != nil {
		return fail(fmt.Errorf("write request: %w", err))
	}
	if err := c.bw.Flush(); err != nil {
		return fail(fmt.Errorf("write request: %w", err))
	}

	c.lc.limit = t.o.MaxResponseHeaderBytes
	var resp *http.Response
	for i := 0; ; i++ {
		r, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.lc.limit <= 0 {
				err = fmt.Errorf("read response: head larger than %d bytes", t.o.MaxResponseHeaderBytes)
			}
			return fail(fmt.Errorf("read response: %w", err))
		}
		if r.StatusCode == http.StatusSwitchingProtocols {
			return fail(errUpgrade)
		}
		if r.StatusCode >= 200 || r.StatusCode < 100 {
			resp = r
			break
		}
		// An interim answer (100, 103): it has no body; the final one
		// follows on the same connection.
		if i+1 >= maxInterim {
			return fail(errors.New("read response: too many 1xx answers"))
		}
	}
	c.lc.limit = math.MaxInt64

	// The body may stream past the head timeout, as long as the request's
	// own deadline allows.
	var body time.Time
	if hasDeadline {
		body = deadline
	}
	if err := c.nc.SetDeadline(body); err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		// Cancelled while the head was read: the deadline just set may
		// have replaced the one the cancellation moved into the past.
		return fail(ctx.Err())
	}
	keep := !resp.Close
	if resp.Body == http.NoBody {
		t.release(c, stop() && keep)
		return resp, nil
	}
	resp.Body = &bodyReader{rc: resp.Body, c: c, t: t, stop: stop, keep: keep}
	return resp, nil
}

// bodyReader hands the connection back when the body has been read to its
// end, and closes it when the body is closed early or fails.
type bodyReader struct {
	rc   io.ReadCloser
	c    *conn
	t    *Transport
	stop func() bool
	keep bool
	done atomic.Bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		b.finish(false)
	}
	return n, err
}

// Close closes the connection first unless the body was read to its end:
// net/http's body would otherwise drain the rest of it from the upstream.
func (b *bodyReader) Close() error {
	if !b.done.Load() {
		b.finish(false)
	}
	_ = b.rc.Close()
	return nil
}

func (b *bodyReader) finish(complete bool) {
	if b.done.Swap(true) {
		return
	}
	// stop() is false when the cancellation already moved the deadline.
	b.t.release(b.c, b.stop() && complete && b.keep)
}

// release returns c to the pool or closes it.
func (t *Transport) release(c *conn, reuse bool) {
	// Bytes already read past the end of the answer (a body longer than
	// its Content-Length, a body sent on a HEAD answer, a second answer
	// nobody asked for) would be read as the answer to the next request
	// on this connection, which may be another client's: close it, as
	// net/http's Transport closes a connection with unsolicited bytes.
	if reuse && c.br.Buffered() > 0 {
		reuse = false
	}
	if !reuse {
		c.nc.Close()
		return
	}
	c.idleAt = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle[c.addr]) >= t.o.MaxIdlePerHost {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.addr] = append(t.idle[c.addr], c)
	if t.janitor == nil {
		t.janitor = time.AfterFunc(t.o.IdleTimeout, t.sweep)
	}
	t.mu.Unlock()
}

// get returns the most recently used idle connection to addr, or dials a
// new one. reused tells which.
func (t *Transport) get(ctx context.Context, addr, scheme string) (c *conn, reused bool, err error) {
	for c = t.popIdle(addr); c != nil; c = t.popIdle(addr) {
		// Anything the upstream sent while the connection sat idle — an
		// answer nobody asked for, which would be read as the next
		// request's (another client's), or the close that ends a
		// keep-alive — makes it unusable. net/http's Transport keeps a
		// read loop on every idle connection to notice; one non-blocking
		// peek before reuse does the same here.
		if quiet(c.nc) {
			return c, true, nil
		}
		c.nc.Close()
	}
	c, err = t.dial(ctx, addr, scheme)
	return c, false, err
}

// popIdle takes the most recently used idle connection to addr off the
// pool, closing any that idled past IdleTimeout; nil when none is left.
func (t *Transport) popIdle(addr string) *conn {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[addr]
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(c.idleAt) < t.o.IdleTimeout {
			t.idle[addr] = list
			return c
		}
		// The rest are older still: the list is in the order connections
		// were put back.
		for _, old := range list {
			old.nc.Close()
		}
		c.nc.Close()
		list = list[:0]
	}
	t.idle[addr] = list
	return nil
}

func (t *Transport) dial(ctx context.Context, addr, scheme string) (*conn, error) {
	var (
		nc  net.Conn
		err error
	)
	if scheme == "https" {
		nc, err = t.dialer.DialContext(ctx, "tcp", addr)
	} else {
		nc, err = t.plain.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, addr: addr}
	c.lc = &limitedConn{Conn: nc, limit: math.MaxInt64}
	c.br = bufio.NewReaderSize(c.lc, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	return c, nil
}

// sweep closes connections idle for longer than IdleTimeout, and re-arms
// itself while any remain idle.
func (t *Transport) sweep() {
	cutoff := time.Now().Add(-t.o.IdleTimeout)
	var stale []*conn
	t.mu.Lock()
	remain := 0
	for addr, list := range t.idle {
		i := 0
		for i < len(list) && !list[i].idleAt.After(cutoff) {
			stale = append(stale, list[i])
			i++
		}
		list = append(list[:0], list[i:]...)
		t.idle[addr] = list
		remain += len(list)
	}
	if remain > 0 && !t.closed {
		t.janitor.Reset(t.o.IdleTimeout)
	} else {
		t.janitor = nil
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// CloseIdleConnections closes every idle connection, here and in Fallback.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*conn)
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.nc.Close()
		}
	}
	if ci, ok := t.o.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Close closes the idle connections and keeps any connection still in use
// from being pooled when its exchange ends.
func (t *Transport) Close() {
	t.mu.Lock()
	t.closed = true
	if t.janitor != nil {
		t.janitor.Stop()
		t.janitor = nil
	}
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// conn is one upstream connection with its buffers.
type conn struct {
	nc     net.Conn
	lc     *limitedConn
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	idleAt time.Time
}

// limitedConn counts what is read (a pooled connection that fails before
// a byte arrived is a stale one) and refuses to read past limit while the
// answer's head is parsed: http.ReadResponse itself sets no bound.
type limitedConn struct {
	net.Conn
	read  int64
	limit int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.limit <= 0 {
		return 0, errors.New("response head too large")
	}
	if int64(len(p)) > l.limit {
		p = p[:l.limit]
	}
	n, err := l.Conn.Read(p)
	l.read += int64(n)
	l.limit -= int64(n)
	return n, err
}

// address is host:port of req's target, the scheme's port by default.
func address(req *http.Request) (string, error) {
	host, port := req.URL.Hostname(), req.URL.Port()
	if host == "" {
		return "", errors.New("h1transport: request has no host")
	}
	if port == "" {
		port = "443"
		if req.URL.Scheme == "http" {
			port = "80"
		}
	}
	return net.JoinHostPort(host, port), nil
}

// validHeader refuses a header that would not survive the wire intact (a
// name outside the token set, a value with CR, LF or NUL), as
// http.Transport does: written raw, it could split the request.
func validHeader(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h1transport: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h1transport: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
