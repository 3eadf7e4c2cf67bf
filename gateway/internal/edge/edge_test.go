package edge

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/gateway/internal/hygiene"
)

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestTLSEdgeSpeaksH2AndChecksH1Framing: the gateway's own TLS listener
// serves HTTP/2 to clients that negotiate it, and passes HTTP/1 plaintext
// through the framing check.
func TestTLSEdgeSpeaksH2AndChecksH1Framing(t *testing.T) {
	cert, pool := selfSigned(t)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto+" "+map[bool]string{true: "ok", false: "smuggling"}[hygiene.FramingVerdict(r.Context()) == hygiene.FrameOK])
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv := NewServer(ServerOptions{Handler: h, ReadHeaderTimeout: 2 * time.Second, MaxHeaderBytes: 64 << 10, Logger: log})
	go func() { _ = srv.Serve(Listen(l, cfg, time.Second, log)) }()
	t.Cleanup(func() { _ = srv.Close() })

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0 ok" {
		t.Fatalf("h2 answer %q", body)
	}

	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	r1, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := io.ReadAll(r1.Body)
	if string(b1) != "HTTP/1.1 smuggling" {
		t.Fatalf("h1 over TLS: %q", b1)
	}
}

// TestHandshakeDeadline: a client that connects and says nothing is cut
// off at the handshake deadline and does not block other clients.
func TestHandshakeDeadline(t *testing.T) {
	cert, _ := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := Listen(l, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, 200*time.Millisecond, slog.New(slog.DiscardHandler))
	defer tl.Close()
	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("silent client not closed by the handshake deadline: %v", err)
	}
}

// TestRedirectHandler: plain HTTP goes to the public host, never the
// request's Host.
func TestRedirectHandler(t *testing.T) {
	pub, _ := url.Parse("https://gw.example:8443")
	h := RedirectHandler(pub)
	for target, want := range map[string]string{
		"/api/v1/catalog?x=1": "https://gw.example:8443/api/v1/catalog?x=1",
		"//evil.example/x":    "https://gw.example:8443//evil.example/x",
	} {
		req, _ := http.NewRequest("GET", "http://evil.example"+target, nil)
		req.RequestURI = target
		req.Host = "evil.example"
		w := &recorder{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != http.StatusPermanentRedirect || w.h.Get("Location") != want {
			t.Errorf("%s: %d %q", target, w.code, w.h.Get("Location"))
		}
	}
}

type recorder struct {
	h    http.Header
	code int
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(c int)           { r.code = c }

// TestSilentClientsCannotHoldEveryHandshakeSlot: handshakes in progress
// are bounded, so one source opening that many connections and saying
// nothing must not hold every slot until the deadline — which would stop
// Accept for everyone (a slowloris at the handshake). Another client's
// handshake completes at once.
func TestSilentClientsCannotHoldEveryHandshakeSlot(t *testing.T) {
	cert, pool := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := Listen(l, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, 10*time.Second, slog.New(slog.DiscardHandler))
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	for range maxHandshakes + 10 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // let the listener take them all

	// Another client (its own loopback address).
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	start := time.Now()
	c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("another client's handshake failed after %v while one source held silent connections: %v", time.Since(start), err)
	}
	_ = c.Close()
}

// TestABurstFromOneSourceIsServed: the per-source share applies only when
// the handshake slots run short: hundreds of connections opened at once
// from one address (a benchmark, a load balancer that translates
// addresses) all complete their handshakes.
func TestABurstFromOneSourceIsServed(t *testing.T) {
	cert, pool := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := Listen(l, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, 10*time.Second, slog.New(slog.DiscardHandler))
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	const n = 3 * maxHandshakesPerSource
	errs := make(chan error, n)
	for range n {
		go func() {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", l.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
			if err == nil {
				_ = c.Close()
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("a handshake of the burst failed: %v", err)
		}
	}
}
