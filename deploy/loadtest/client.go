// Package loadtest is Rampart's load generator: an open-model (arrival-rate)
// executor, a client that signs in through the real authorization-code +
// PKCE flow, and the scenarios of issue 8 — smoke, load, spike, soak and
// abuse — each with its thresholds and a JSON + Markdown summary.
//
// It is Go rather than k6 scripts because k6 (go.k6.io/k6) is AGPL-licensed
// and this workplace's package policy marks it "not to use"; a Go generator
// also needs nothing installed, runs the CI smoke test in-process, and can
// give each simulated user its own loopback source address (127.x.y.z), so
// per-address rate limits see many clients as they would in production.
package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authapp "github.com/rampart-go/rampart/auth-service/app"
	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/mtls"
)

// Target is the running stack under test.
type Target struct {
	// BaseURL is the gateway's public URL.
	BaseURL string
	// CAFile is the dev CA the gateway's certificate chains to: clients
	// trust it, they never skip verification.
	CAFile string
	// Ops are each service's ops listener (/metrics), by service name.
	Ops map[string]string
	// Credentials are the demo accounts and clients.
	Credentials authapp.Credentials
}

// LoadTarget reads DIR/endpoints.json and DIR/credentials.json, as written
// by devstack (CONTRACT §1). baseURL and caFile, when not empty, override
// the file's values.
func LoadTarget(dir, baseURL, caFile string) (Target, error) {
	var ep stack.Endpoints
	if err := readJSON(filepath.Join(dir, "endpoints.json"), &ep); err != nil {
		return Target{}, fmt.Errorf("read endpoints (is the devstack running? make run): %w", err)
	}
	var creds authapp.Credentials
	if err := readJSON(filepath.Join(dir, "credentials.json"), &creds); err != nil {
		return Target{}, err
	}
	t := FromEndpoints(ep, creds)
	if baseURL != "" {
		t.BaseURL = strings.TrimRight(baseURL, "/")
	}
	if caFile != "" {
		t.CAFile = caFile
	}
	return t, nil
}

// FromEndpoints builds a Target from a stack's endpoints and credentials.
func FromEndpoints(ep stack.Endpoints, creds authapp.Credentials) Target {
	t := Target{BaseURL: ep.Gateway, CAFile: ep.CAFile, Ops: map[string]string{}, Credentials: creds}
	for name, s := range ep.Services {
		t.Ops[name] = s.Ops
	}
	return t
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the state directory
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// secret returns the confidential machine client's id and secret.
func (t Target) secret(id string) string {
	for _, c := range t.Credentials.Clients {
		if c.ClientID == id {
			return c.ClientSecret
		}
	}
	return ""
}

// Client is one simulated client: its own source address, its own TLS
// connections, the run's recorder. Every request carries a fresh W3C
// traceparent and a route tag.
type Client struct {
	base   string
	hc     *http.Client
	rec    *Recorder
	Source netip.Addr
}

// NewClient returns a client of t that connects from source (a loopback
// address; the zero Addr lets the kernel choose) and records into rec.
func (t Target) NewClient(rec *Recorder, source netip.Addr) (*Client, error) {
	pool, err := mtls.LoadPool(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", t.CAFile, err)
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: source.AsSlice()}
	}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &Client{
		base: t.BaseURL, rec: rec, Source: source,
		hc: &http.Client{Transport: tr, Timeout: 30 * time.Second, CheckRedirect: noRedirects},
	}, nil
}

// noRedirects hands every redirect to the caller: the login flow reads
// each Location itself, and never follows the last one to the loopback
// redirect URI, where no application listens.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Close drops the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Request is one call: a route tag for the figures, and the statuses that
// count as success (default: 200).
type Request struct {
	Tag     string
	Method  string
	Path    string // relative to the base URL, or absolute
	Header  http.Header
	Body    []byte
	Expect  []int
	Cookies []*http.Cookie
}

// Response is a finished call with its body read.
type Response struct {
	*http.Response
	Body    []byte
	TraceID string
	// OK is whether the status was one of Expect.
	OK bool
}

// JSON decodes the body into v.
func (r *Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Do performs req, records it under its tag and returns the response. A
// transport error is recorded as status 0 and returned.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	u := req.Path
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		u = c.base + req.Path
	}
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	for _, ck := range req.Cookies {
		hr.AddCookie(ck)
	}
	traceID, tp := traceparent()
	hr.Header.Set("Traceparent", tp)
	expect := req.Expect
	if len(expect) == 0 {
		expect = []int{http.StatusOK}
	}
	start := time.Now()
	resp, err := c.hc.Do(hr)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	d := time.Since(start)
	f := Failure{Tag: req.Tag, Method: req.Method, Path: hr.URL.Path, TraceID: traceID}
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, err // the run ended mid-request: not the system's fault
		}
		f.Error = err.Error()
		c.rec.observe(req.Tag, d, 0, false, f)
		return nil, fmt.Errorf("%s %s: %w", req.Method, hr.URL.Path, err)
	}
	f.Status, f.RequestID = resp.StatusCode, resp.Header.Get("X-Request-Id")
	ok := slices.Contains(expect, resp.StatusCode)
	c.rec.observe(req.Tag, d, resp.StatusCode, ok, f)
	return &Response{Response: resp, Body: b, TraceID: traceID, OK: ok}, nil
}

// traceparent returns a random W3C trace id and the sampled traceparent
// header carrying it with a random parent span id.
func traceparent() (string, string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	tid, sid := hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return tid, "00-" + tid + "-" + sid + "-01"
}

// Addresses hands out distinct loopback source addresses from a /16 of
// 127.0.0.0/8 (Linux routes the whole /8 to lo, so any of them can be a
// source): each simulated user, or attacker, is its own client address.
type Addresses struct {
	prefix byte
	next   uint16
}

// NewAddresses returns a generator of 127.<prefix>.x.y addresses.
func NewAddresses(prefix byte) *Addresses { return &Addresses{prefix: prefix, next: 1} }

// Next returns the next address.
func (a *Addresses) Next() netip.Addr {
	n := a.next
	a.next++
	if a.next == 0 {
		a.next = 1
	}
	return netip.AddrFrom4([4]byte{127, a.prefix, byte(n >> 8), byte(n & 0xff)}) //nolint:gosec // G115: n is a uint16 split into its two bytes
}
