package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every test here uses real certificates from NewCA and real TLS
// handshakes on loopback: the properties under test live in crypto/tls and
// crypto/x509 as much as in this package.

const leafValidity = time.Hour

func newCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func poolOf(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// loopback names every leaf carries, so a client can dial 127.0.0.1 with
// the usual host name check.
var (
	loopbackDNS = []string{"localhost"}
	loopbackIPs = []net.IP{net.IPv4(127, 0, 0, 1)}
)

// writeLeaf issues a leaf for name and writes it to dir/<file>.crt|.key.
func writeLeaf(t testing.TB, ca *CA, dir, file, name string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(name, loopbackDNS, loopbackIPs, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, file+".crt"), filepath.Join(dir, file+".key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// reloaderFor issues a leaf for service name and serves it from a Reloader.
func reloaderFor(t testing.TB, ca *CA, name string) *Reloader {
	t.Helper()
	certFile, keyFile := writeLeaf(t, ca, t.TempDir(), name, name)
	r, err := NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func parsePEM(t testing.TB, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signLeaf signs an arbitrary leaf template with ca's key: what a leaked
// CA key could mint, which Issue itself would never produce.
func signLeaf(t testing.TB, ca *CA, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestIssuedLeafIsAShortLivedP256SPIFFECertificate(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	if pub, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.Cert.PublicKey)
	}
	if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero {
		t.Error("CA may not sign intermediates: want IsCA with MaxPathLen 0")
	}

	before := time.Now()
	certPEM, keyPEM, err := ca.Issue("order-service", loopbackDNS, loopbackIPs, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, certPEM)

	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://rampart.local/service/order-service" {
		t.Errorf("URI SANs %v, want exactly spiffe://rampart.local/service/order-service", leaf.URIs)
	}
	if got := ServiceID("order-service"); got != "spiffe://rampart.local/service/order-service" {
		t.Errorf("ServiceID = %q", got)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("leaf key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("signature algorithm %v", leaf.SignatureAlgorithm)
	}
	if leaf.IsCA {
		t.Error("a leaf must not be a CA")
	}
	// Short-lived: NotAfter is the requested validity from now, not years.
	if leaf.NotAfter.Before(before.Add(leafValidity-time.Minute)) || leaf.NotAfter.After(time.Now().Add(leafValidity+time.Minute)) {
		t.Errorf("NotAfter %s, want about now + %s", leaf.NotAfter, leafValidity)
	}
	if !leaf.NotBefore.Before(before) {
		t.Errorf("NotBefore %s should be back-dated for clock skew", leaf.NotBefore)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("leaf does not verify for %v: %v", usage, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca), DNSName: "localhost"}); err != nil {
		t.Errorf("leaf does not verify for localhost: %v", err)
	}
	if name, err := IdentityOf(leaf); err != nil || name != "order-service" {
		t.Errorf("IdentityOf = %q, %v", name, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("issued cert and key do not match: %v", err)
	}
}

func TestCANameConstraintsRefuseForeignNames(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	roots := poolOf(ca)
	tests := []struct {
		name    string
		tmpl    *x509.Certificate
		allowed bool
	}{
		{"a Rampart identity on loopback is allowed", &x509.Certificate{
			URIs: []*url.URL{mustURL(t, ServiceID("gateway"))}, DNSNames: []string{"localhost", "gateway"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 1, 2, 3)},
		}, true},
		{"a public DNS name is refused", &x509.Certificate{
			URIs: []*url.URL{mustURL(t, ServiceID("gateway"))}, DNSNames: []string{"www.example.com"},
		}, false},
		{"a look-alike DNS name is refused", &x509.Certificate{
			URIs: []*url.URL{mustURL(t, ServiceID("gateway"))}, DNSNames: []string{"rampart.local.example.com"},
		}, false},
		{"a SPIFFE id in another trust domain is refused", &x509.Certificate{
			URIs: []*url.URL{mustURL(t, "spiffe://evil.example/service/gateway")},
		}, false},
		{"a public IP address is refused", &x509.Certificate{
			URIs: []*url.URL{mustURL(t, ServiceID("gateway"))}, IPAddresses: []net.IP{net.IPv4(8, 8, 8, 8)},
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf := signLeaf(t, ca, tc.tmpl)
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if tc.allowed {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ci x509.CertificateInvalidError
			if !errors.As(err, &ci) || ci.Reason != x509.CANotAuthorizedForThisName {
				t.Fatalf("got %v, want CANotAuthorizedForThisName", err)
			}
		})
	}

	// Issue itself does not check names (crypto/x509 only checks on
	// verification): a leaf for a foreign domain is minted but useless.
	certPEM, _, err := ca.Issue("gateway", []string{"bank.example.com"}, nil, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parsePEM(t, certPEM).Verify(x509.VerifyOptions{Roots: roots}); err == nil {
		t.Fatal("a leaf for bank.example.com verified against the dev CA")
	}
}

func TestIdentityOf(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	tests := []struct {
		name string
		uris []string
		want string // "" = refused
		msg  string
	}{
		{"one Rampart id names the service", []string{"spiffe://rampart.local/service/user-service"}, "user-service", ""},
		{"non-SPIFFE URIs are ignored", []string{"https://example.com/x", "spiffe://rampart.local/service/gateway"}, "gateway", ""},
		{"no SAN is no identity", nil, "", "no SPIFFE id"},
		{"another trust domain is refused", []string{"spiffe://evil.example/service/gateway"}, "", "outside trust domain"},
		{"a prefix look-alike domain is refused", []string{"spiffe://rampart.local.evil/service/gateway"}, "", "outside trust domain"},
		{"a non-service path is refused", []string{"spiffe://rampart.local/admin/gateway"}, "", "outside trust domain"},
		{"two ids are refused", []string{"spiffe://rampart.local/service/a", "spiffe://rampart.local/service/b"}, "", "more than one"},
		{"an empty name is refused", []string{"spiffe://rampart.local/service/"}, "", "malformed"},
		{"a nested path is refused", []string{"spiffe://rampart.local/service/a/b"}, "", "malformed"},
		{"a query is refused", []string{"spiffe://rampart.local/service/a?x=1"}, "", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "gateway"}}
			for _, u := range tc.uris {
				tmpl.URIs = append(tmpl.URIs, mustURL(t, u))
			}
			got, err := IdentityOf(signLeaf(t, ca, tmpl))
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("IdentityOf = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("IdentityOf = %q, %v; want an error containing %q", got, err, tc.msg)
			}
		})
	}
}

func TestPeerIdentityWithoutTLS(t *testing.T) {
	t.Parallel()
	r, err := http.NewRequest(http.MethodGet, "http://example.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := PeerIdentity(r); ok || name != "" {
		t.Errorf("PeerIdentity of a plain request = %q, %v", name, ok)
	}
	r.TLS = &tls.ConnectionState{}
	if _, ok := PeerIdentity(r); ok {
		t.Error("PeerIdentity without peer certificates reported an identity")
	}
}

func TestThumbprintIsBase64URLSHA256OfDER(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	a, _, err := ca.Issue("gateway", nil, nil, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := ca.Issue("gateway", nil, nil, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	ca1, cb := parsePEM(t, a), parsePEM(t, b)
	sum := sha256.Sum256(ca1.Raw)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	got := Thumbprint(ca1)
	if got != want {
		t.Fatalf("Thumbprint = %q, want %q", got, want)
	}
	if len(got) != 43 || strings.ContainsAny(got, "+/=") {
		t.Errorf("Thumbprint %q is not unpadded base64url of 32 bytes", got)
	}
	reparsed, err := x509.ParseCertificate(ca1.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if Thumbprint(reparsed) != got || Thumbprint(ca1) != got {
		t.Error("Thumbprint is not stable for the same certificate")
	}
	if Thumbprint(cb) == got {
		t.Error("two certificates for the same service share a thumbprint")
	}
}

// tlsServer accepts connections with cfg, completes each handshake and
// reports its result; a successful connection gets "ok\n" and is closed.
type tlsServer struct {
	addr    string
	results chan error
}

func startTLSServer(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: ln.Addr().String(), results: make(chan error, 16)}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				tc, ok := c.(*tls.Conn)
				if !ok {
					s.results <- errors.New("not a TLS connection")
					return
				}
				err := tc.Handshake()
				if err == nil {
					_, err = io.WriteString(tc, "ok\n")
				}
				s.results <- err
			})
		}
	})
	return s
}

// handshake dials s with cfg and returns the client's error, from the
// handshake or (TLS 1.3, where the server refuses the client's certificate
// after the client's handshake is done) the first read, and the server's
// handshake result.
func (s *tlsServer) handshake(t *testing.T, cfg *tls.Config) (conn *tls.Conn, clientErr, serverErr error) {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, clientErr = tls.DialWithDialer(d, "tcp", s.addr, cfg)
	if clientErr == nil {
		t.Cleanup(func() { _ = conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 3)
		if _, err := io.ReadFull(conn, buf); err != nil {
			clientErr = err
		} else if string(buf) != "ok\n" {
			clientErr = errors.New("unexpected greeting " + string(buf))
		}
	}
	select {
	case serverErr = <-s.results:
	case <-time.After(10 * time.Second):
		t.Fatal("server never finished the handshake")
	}
	return conn, clientErr, serverErr
}

type rejection struct{ reason, peer, identity string }

type rejections struct {
	mu  sync.Mutex
	got []rejection
}

func (r *rejections) record(reason, peer, identity string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rejection{reason, peer, identity})
}

func (r *rejections) take() []rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

func TestServerConfigRefusesEachKindOfCallerOnce(t *testing.T) {
	t.Parallel()
	ca, other := newCA(t, "test CA"), newCA(t, "another CA")
	server := reloaderFor(t, ca, "order-service")
	clients := map[string]*Reloader{
		"gateway":            reloaderFor(t, ca, "gateway"),
		"user-service":       reloaderFor(t, ca, "user-service"),
		"gateway from other": reloaderFor(t, other, "gateway"),
	}
	var rej rejections
	srv := startTLSServer(t, ServerConfig(server, poolOf(ca), []string{"gateway", "auth-service"}, rej.record))

	tests := []struct {
		name         string
		client       string // "" = no certificate
		wantReason   string // "" = accepted
		wantIdentity string
	}{
		{"an allowed caller is accepted", "gateway", "", ""},
		{"a caller without a certificate is refused", "", ReasonNoCertificate, ""},
		{"a certificate from another CA is refused", "gateway from other", ReasonUntrusted, ""},
		{"a Rampart service not on the allowlist is refused", "user-service", ReasonIdentityNotAllowed, "user-service"},
	}
	// Not parallel: the rejections recorder and the server are shared, and
	// each case asserts exactly one callback for its own connection.
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tc := range tests {
			t.Run(tls.VersionName(version)+"/"+tc.name, func(t *testing.T) {
				cfg := &tls.Config{MinVersion: version, MaxVersion: version, RootCAs: poolOf(ca), ServerName: "localhost"}
				if tc.client != "" {
					cfg.GetClientCertificate = clients[tc.client].GetClientCertificate
				}
				conn, clientErr, serverErr := srv.handshake(t, cfg)
				got := rej.take()
				if tc.wantReason == "" {
					if clientErr != nil || serverErr != nil {
						t.Fatalf("refused: client %v, server %v", clientErr, serverErr)
					}
					if len(got) != 0 {
						t.Fatalf("onReject called for an accepted caller: %+v", got)
					}
					return
				}
				if clientErr == nil || serverErr == nil {
					t.Fatalf("accepted: client %v, server %v", clientErr, serverErr)
				}
				if len(got) != 1 {
					t.Fatalf("onReject called %d times (%+v), want once", len(got), got)
				}
				if got[0].reason != tc.wantReason || got[0].identity != tc.wantIdentity {
					t.Errorf("onReject(%q, _, %q), want (%q, _, %q)", got[0].reason, got[0].identity, tc.wantReason, tc.wantIdentity)
				}
				if conn != nil && got[0].peer != conn.LocalAddr().String() {
					t.Errorf("onReject peer %q, want the client's address %s", got[0].peer, conn.LocalAddr())
				}
			})
		}
	}
}

// TestServerConfigFailsClosedWithoutPerConnectionConfig: should a caller
// drop GetConfigForClient (say, to wrap the config), the top-level
// VerifyConnection still refuses.
func TestServerConfigFailsClosedWithoutPerConnectionConfig(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	cfg := ServerConfig(reloaderFor(t, ca, "order-service"), poolOf(ca), []string{"gateway"}, nil)
	cfg.GetConfigForClient = nil
	srv := startTLSServer(t, cfg)
	for _, client := range []*Reloader{nil, reloaderFor(t, ca, "user-service")} {
		c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: poolOf(ca), ServerName: "localhost"}
		if client != nil {
			c.GetClientCertificate = client.GetClientCertificate
		}
		_, clientErr, serverErr := srv.handshake(t, c)
		if clientErr == nil || serverErr == nil {
			t.Fatalf("accepted without GetConfigForClient: client %v, server %v", clientErr, serverErr)
		}
	}
}

func TestClientConfigChecksTheServersIdentity(t *testing.T) {
	t.Parallel()
	ca, other := newCA(t, "test CA"), newCA(t, "another CA")
	client := reloaderFor(t, ca, "gateway")
	userSrv := startTLSServer(t, ServerConfig(reloaderFor(t, ca, "user-service"), poolOf(ca), []string{"gateway"}, nil))
	impostor := startTLSServer(t, ServerConfig(reloaderFor(t, other, "order-service"), poolOf(ca), []string{"gateway"}, nil))

	tests := []struct {
		name   string
		srv    *tlsServer
		expect string
		msg    string // "" = accepted
	}{
		{"the expected service is accepted", userSrv, "user-service", ""},
		{"another Rampart service is refused", userSrv, "order-service", `connected to "user-service", expected "order-service"`},
		{"a server from another CA is refused", impostor, "order-service", "certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ClientConfig(client, poolOf(ca), tc.expect)
			cfg.ServerName = "localhost"
			_, clientErr, _ := tc.srv.handshake(t, cfg)
			if tc.msg == "" {
				if clientErr != nil {
					t.Fatalf("refused: %v", clientErr)
				}
				return
			}
			if clientErr == nil || !strings.Contains(clientErr.Error(), tc.msg) {
				t.Fatalf("got %v, want an error containing %q", clientErr, tc.msg)
			}
		})
	}
}

// TestMutualTLSOverHTTP2 wires the pieces as a service does: a server with
// ServerConfig, a client through NewTransport with ClientConfig, and the
// handler reading the caller's identity with PeerIdentity.
func TestMutualTLSOverHTTP2(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		TLSConfig:         ServerConfig(reloaderFor(t, ca, "order-service"), poolOf(ca), []string{"gateway"}, nil),
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, ok := PeerIdentity(r)
			if !ok {
				http.Error(w, "no identity", http.StatusForbidden)
				return
			}
			_, _ = io.WriteString(w, name)
		}),
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })

	tr := NewTransport(ClientConfig(reloaderFor(t, ca, "gateway"), poolOf(ca), "order-service"), TransportOptions{})
	t.Cleanup(tr.CloseIdleConnections)
	if tr.Proxy != nil {
		t.Error("the transport consults a proxy")
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "gateway" {
		t.Errorf("status %d body %q, want 200 gateway", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
}

func serialSeenBy(t *testing.T, srv *tlsServer, roots *x509.CertPool) *big.Int {
	t.Helper()
	conn, clientErr, serverErr := srv.handshake(t, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "localhost"})
	if clientErr != nil || serverErr != nil {
		t.Fatalf("handshake: client %v, server %v", clientErr, serverErr)
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestReloaderHotReloadAndRefusals(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := writeLeaf(t, ca, dir, "svc", "order-service")
	r, err := NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLSServer(t, PublicServerConfig(r))
	first := r.Certificate().Leaf.SerialNumber
	if got := serialSeenBy(t, srv, poolOf(ca)); got.Cmp(first) != 0 {
		t.Fatalf("served serial %x, want %x", got, first)
	}
	if err := r.Reload(); err != nil || r.Certificate().Leaf.SerialNumber.Cmp(first) != 0 {
		t.Fatalf("reloading unchanged files: %v", err)
	}

	// Rotate: new handshakes present the new certificate.
	writeLeaf(t, ca, dir, "svc", "order-service")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	second := r.Certificate().Leaf.SerialNumber
	if second.Cmp(first) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	if got := serialSeenBy(t, srv, poolOf(ca)); got.Cmp(second) != 0 {
		t.Fatalf("after reload served serial %x, want %x", got, second)
	}

	// Half a rotation: a new key next to the current certificate. Refused,
	// the current pair stays in service.
	keep, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.Issue("order-service", loopbackDNS, loopbackIPs, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a mismatched certificate and key were accepted")
	}
	if got := serialSeenBy(t, srv, poolOf(ca)); got.Cmp(second) != 0 {
		t.Fatalf("after a refused reload served serial %x, want %x", got, second)
	}

	// Garbage and expired certificates are refused the same way.
	if err := os.WriteFile(keyFile, keep, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a corrupt certificate was accepted")
	}
	expiredCert, expiredKey, err := ca.Issue("order-service", loopbackDNS, loopbackIPs, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, expiredKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, expiredCert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired certificate: %v, want refused as expired", err)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a missing certificate file was accepted")
	}
	if got := serialSeenBy(t, srv, poolOf(ca)); got.Cmp(second) != 0 {
		t.Fatalf("after refused reloads served serial %x, want %x", got, second)
	}

	if _, err := NewReloader(filepath.Join(dir, "missing.crt"), keyFile, nil); err == nil {
		t.Error("NewReloader accepted a missing certificate")
	}
}

func TestReloaderRunPicksUpRotation(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := writeLeaf(t, ca, dir, "svc", "gateway")
	r, err := NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Certificate()
	ctx := t.Context()
	done := make(chan struct{})
	go func() { r.Run(ctx, 10*time.Millisecond); close(done) }()

	// EnsureLeaf writes key then certificate; Run may see the pair half
	// written, refuse it, and must settle on the new pair.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.EnsureLeaf(dir, "svc", loopbackDNS, loopbackIPs, leafValidity); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Certificate() == first {
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the rotated certificate")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got, err := r.GetClientCertificate(nil)
	if err != nil || got != r.Certificate() {
		t.Errorf("GetClientCertificate = %p, %v; want the current pair", got, err)
	}
	if name, _ := IdentityOf(r.Certificate().Leaf); name != "svc" {
		t.Errorf("rotated identity %q, want svc", name)
	}
	select {
	case <-done:
		t.Fatal("Run returned before its context ended")
	default:
	}
}

func TestEnsureCAAndEnsureLeaf(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	again, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Error("EnsureCA replaced an existing CA")
	}
	pool, err := LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}

	certFile, keyFile, err := ca.EnsureLeaf(dir, "gateway", loopbackDNS, loopbackIPs, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parsePEM(t, before).Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("leaf does not verify against LoadPool's pool: %v", err)
	}
	if _, _, err := ca.EnsureLeaf(dir, "gateway", loopbackDNS, loopbackIPs, leafValidity); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(certFile); string(after) != string(before) {
		t.Error("EnsureLeaf reissued a fresh leaf")
	}
	// A leaf from another CA is replaced.
	if _, _, err := newCA(t, "another CA").EnsureLeaf(dir, "gateway", loopbackDNS, loopbackIPs, leafValidity); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.EnsureLeaf(dir, "gateway", loopbackDNS, loopbackIPs, leafValidity); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(certFile)
	if _, err := parsePEM(t, after).Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("a leaf signed by another CA was kept: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("leaf key mode: %v", err)
	}

	// Half a CA is reported, never overwritten.
	half := t.TempDir()
	if err := os.WriteFile(filepath.Join(half, "ca.crt"), before, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureCA(half); err == nil {
		t.Error("EnsureCA accepted a CA certificate without its key")
	}
	if b, _ := os.ReadFile(filepath.Join(half, "ca.crt")); string(b) != string(before) {
		t.Error("EnsureCA overwrote a half-present CA")
	}
	if _, err := LoadPool(filepath.Join(half, "missing.crt")); err == nil {
		t.Error("LoadPool accepted a missing file")
	}
	if err := os.WriteFile(filepath.Join(half, "empty.crt"), []byte("nothing here"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPool(filepath.Join(half, "empty.crt")); err == nil {
		t.Error("LoadPool accepted a file without certificates")
	}
}

// TestReloaderRefusesANotYetValidCertificate: a certificate whose validity
// starts in the future (a clock skewed on the issuer, a pre-staged
// rotation) would make every peer refuse this service until then. Like an
// expired one, it is refused and the current pair stays in service.
func TestReloaderRefusesANotYetValidCertificate(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := writeLeaf(t, ca, dir, "svc", "order-service")
	r, err := NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	current := r.Certificate()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "order-service"},
		NotBefore:    time.Now().Add(time.Hour), NotAfter: time.Now().Add(2 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{mustURL(t, ServiceID("order-service"))},
		DNSNames:    loopbackDNS, IPAddresses: loopbackIPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "not valid before") {
		t.Fatalf("a not-yet-valid certificate: %v, want refused as not valid before", err)
	}
	if r.Certificate() != current {
		t.Error("the current pair was replaced by a certificate no peer accepts yet")
	}
	if _, err := NewReloader(certFile, keyFile, nil); err == nil {
		t.Error("NewReloader accepted a not-yet-valid certificate")
	}
}

// TestServerReportsACallerThatCannotProveItsKey: crypto/tls calls
// VerifyConnection on the client's certificate before it checks the
// client's CertificateVerify signature. A caller replaying another
// service's certificate (public: every handshake sends it) without its key
// passes VerifyConnection and then fails the handshake — the one
// impersonation attempt mTLS exists to stop. NewServer's ConnState reports
// it once, as untrusted with the identity it claimed; a caller that
// completes the handshake is never reported, however its connection ends.
func TestServerReportsACallerThatCannotProveItsKey(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	var rej rejections
	ms := NewServer(reloaderFor(t, ca, "order-service"), poolOf(ca), []string{"gateway"}, rej.record)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		TLSConfig: ms.Config, ConnState: ms.ConnState, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0),
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })

	gateway := reloaderFor(t, ca, "gateway")
	wrongKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stolen := &tls.Certificate{Certificate: gateway.Certificate().Certificate, PrivateKey: wrongKey}
	waitRejections := func(n int) []rejection {
		var got []rejection
		deadline := time.Now().Add(5 * time.Second)
		for len(got) < n && time.Now().Before(deadline) {
			got = append(got, rej.take()...)
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // and no more
		return append(got, rej.take()...)
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			client := func(cert *tls.Certificate) *http.Client {
				return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
					MinVersion: version, MaxVersion: version, RootCAs: poolOf(ca), ServerName: "localhost",
					GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
				}}}
			}
			honest := client(gateway.Certificate())
			resp, err := honest.Get("https://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatalf("the real gateway was refused: %v", err)
			}
			_ = resp.Body.Close()
			honest.CloseIdleConnections()
			if got := waitRejections(0); len(got) != 0 {
				t.Fatalf("a caller that completed the handshake was reported: %+v", got)
			}

			if resp, err := client(stolen).Get("https://" + ln.Addr().String() + "/"); err == nil {
				_ = resp.Body.Close()
				t.Fatal("a caller without the certificate's key was served")
			}
			got := waitRejections(1)
			if len(got) != 1 {
				t.Fatalf("onReject called %d times (%+v), want once", len(got), got)
			}
			if got[0].reason != ReasonUntrusted || got[0].identity != "gateway" || got[0].peer == "" {
				t.Errorf("onReject(%q, %q, %q), want (%q, <peer>, gateway)", got[0].reason, got[0].peer, got[0].identity, ReasonUntrusted)
			}
		})
	}
}
