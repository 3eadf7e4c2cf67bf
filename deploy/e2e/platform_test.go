package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

func tlsClient(pool *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
}

// TestGatewayReachesEveryServiceOverMTLS proves the gateway routes each
// public prefix to its service over mutual TLS, and that each answer really
// came from that service.
func TestGatewayReachesEveryServiceOverMTLS(t *testing.T) {
	e := start(t)
	gw := e.Endpoints.Gateway

	t.Run("order-service answers the catalogue", func(t *testing.T) {
		resp, body := get(t, e.public, gw+"/api/v1/catalog", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var list struct {
			Items []struct {
				SKU        string `json:"sku"`
				PriceCents int64  `json:"price_cents"`
				Currency   string `json:"currency"`
			} `json:"items"`
		}
		if err := json.Unmarshal(body, &list); err != nil || len(list.Items) == 0 {
			t.Fatalf("catalogue body %s (%v)", body, err)
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("public listener spoke HTTP/%d, want HTTP/2", resp.ProtoMajor)
		}
		if hsts := resp.Header.Get("Strict-Transport-Security"); hsts == "" {
			t.Error("no HSTS header at the edge")
		}
	})

	t.Run("auth-service answers the JWKS", func(t *testing.T) {
		resp, body := get(t, e.public, gw+"/.well-known/jwks.json", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
				Kty string `json:"kty"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) < 2 {
			t.Fatalf("want an EC and an RSA key, got %s (%v)", body, err)
		}
	})

	// The gateway checks tokens at the edge, so a request without one never
	// reaches user-service: the refusal and its event are the gateway's.
	t.Run("the edge refuses a user-service request without a token", func(t *testing.T) {
		before := e.metric(t, stack.Gateway, "rampart_security_events_total", secEventLabels("missing", stack.Gateway, "token.rejected"))
		resp, body := get(t, e.public, gw+"/api/v1/users/me", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="rampart"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("Content-Type = %q", ct)
		}
		after := e.metric(t, stack.Gateway, "rampart_security_events_total", secEventLabels("missing", stack.Gateway, "token.rejected"))
		if after != before+1 {
			t.Errorf("gateway token.rejected/missing went %v -> %v, want +1", before, after)
		}
	})
}

// TestInternalRoutesAreNotReachableThroughTheGateway: /internal/ exists only
// on the mesh.
func TestInternalRoutesAreNotReachableThroughTheGateway(t *testing.T) {
	e := start(t)
	for _, p := range []string{"/internal/v1/users/x", "/internal", "/internal/"} {
		resp, body := get(t, e.public, e.Endpoints.Gateway+p, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d: %s", p, resp.StatusCode, body)
		}
	}
}

// TestServicesRefuseCallersWithoutTheRightCertificate covers the three
// handshake refusals and their security events.
func TestServicesRefuseCallersWithoutTheRightCertificate(t *testing.T) {
	e := start(t)
	orderAPI := e.Endpoints.Services[stack.Order].API + "/api/v1/catalog"

	t.Run("no client certificate fails the handshake", func(t *testing.T) {
		before := e.metric(t, stack.Order, "rampart_security_events_total", secEventLabels("no_certificate", stack.Order, "mtls.rejected"))
		if _, err := e.public.Get(orderAPI); err == nil {
			t.Fatal("request without a client certificate succeeded")
		}
		waitFor(t, 2*time.Second, "mtls.rejected/no_certificate", func() bool {
			return e.metric(t, stack.Order, "rampart_security_events_total", secEventLabels("no_certificate", stack.Order, "mtls.rejected")) == before+1
		})
	})

	t.Run("a certificate from another CA is untrusted", func(t *testing.T) {
		other, err := mtls.NewCA("not rampart", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		client := e.clientWithCert(t, other, stack.Gateway)
		before := e.metric(t, stack.Order, "rampart_security_events_total", secEventLabels("untrusted", stack.Order, "mtls.rejected"))
		if _, err := client.Get(orderAPI); err == nil {
			t.Fatal("request with a foreign certificate succeeded")
		}
		waitFor(t, 2*time.Second, "mtls.rejected/untrusted", func() bool {
			return e.metric(t, stack.Order, "rampart_security_events_total", secEventLabels("untrusted", stack.Order, "mtls.rejected")) == before+1
		})
	})

	t.Run("a valid certificate of a service not on the allowlist is refused", func(t *testing.T) {
		next := e.securityEvents(t, "rampart.security.order-service.mtls.rejected")
		// user-service holds a perfectly valid certificate, but only the
		// gateway may call order-service.
		client := e.clientWithCert(t, e.CA, stack.User)
		before := e.metric(t, stack.Order, "rampart_security_events_total", secEventLabels("identity_not_allowed", stack.Order, "mtls.rejected"))
		if _, err := client.Get(orderAPI); err == nil {
			t.Fatal("user-service was allowed to call order-service")
		}
		waitFor(t, 2*time.Second, "mtls.rejected/identity_not_allowed metric", func() bool {
			return e.metric(t, stack.Order, "rampart_security_events_total", secEventLabels("identity_not_allowed", stack.Order, "mtls.rejected")) == before+1
		})
		for {
			ev, _ := next()
			var m map[string]any
			if err := json.Unmarshal(ev.Data, &m); err != nil {
				t.Fatal(err)
			}
			if m["reason"] == "identity_not_allowed" {
				if m["type"] != "mtls.rejected" || m["service"] != stack.Order {
					t.Errorf("event data %v", m)
				}
				break
			}
		}
	})

	t.Run("an allowed caller gets through", func(t *testing.T) {
		client := e.clientWithCert(t, e.CA, stack.Gateway)
		resp, body := get(t, client, orderAPI, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("gateway identity refused: %d %s", resp.StatusCode, body)
		}
	})
}

// clientWithCert returns a client presenting a fresh certificate for
// identity issued by ca, trusting the stack's CA for the server.
func (e *env) clientWithCert(t testing.TB, ca *mtls.CA, identity string) *http.Client {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(identity, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := mtls.LoadPool(e.Endpoints.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsClient(pool)
	cfg.Certificates = []tls.Certificate{cert}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// TestTraceContinuesFromGatewayToServiceAndThroughNATS: one trace id from
// the gateway's server span, through the mTLS hop into user-service, and on
// into the security event user-service publishes on NATS. The token is valid
// (so the gateway forwards it) but lacks users:read, so user-service itself
// refuses it with access.denied.
func TestTraceContinuesFromGatewayToServiceAndThroughNATS(t *testing.T) {
	e := start(t)
	user := e.Credentials.Accounts["user"]
	code, verifier := e.newCode(t, nil, user.Email, user.Password)
	st, _, tok := e.redeem(t, code, verifier)
	if st != http.StatusOK {
		t.Fatalf("redeem: %d %v", st, tok)
	}
	next := e.securityEvents(t, "rampart.security.user-service.access.denied")

	resp, body := get(t, e.public, e.Endpoints.Gateway+"/api/v1/users/me",
		http.Header{"Authorization": {"Bearer " + tok["access_token"].(string)}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reqID := resp.Header.Get("X-Request-Id")

	// user-service served exactly one API request in this test; its trace
	// must be rooted in a server span of the gateway.
	var gatewayTrace trace.TraceID
	waitFor(t, 5*time.Second, "gateway and user-service spans in one trace", func() bool {
		spans := e.spans.Ended()
		for _, s := range spans {
			if serviceOf(s.Resource().Attributes()) != stack.User || s.SpanKind() != trace.SpanKindServer {
				continue
			}
			for _, g := range spans {
				if serviceOf(g.Resource().Attributes()) == stack.Gateway && g.SpanKind() == trace.SpanKindServer &&
					g.SpanContext().TraceID() == s.SpanContext().TraceID() && !g.Parent().IsValid() {
					gatewayTrace = g.SpanContext().TraceID()
					return true
				}
			}
		}
		return false
	})

	for {
		ev, hdr := next()
		var data map[string]any
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data["request_id"] != reqID {
			continue // an event from another request
		}
		ctx := natsx.Extract(context.Background(), propagation.TraceContext{}, hdr)
		if got := trace.SpanContextFromContext(ctx).TraceID(); got != gatewayTrace {
			t.Errorf("NATS message trace id %s, gateway trace id %s", got, gatewayTrace)
		}
		if data["trace_id"] != gatewayTrace.String() {
			t.Errorf("event data trace_id %v, want %s", data["trace_id"], gatewayTrace)
		}
		break
	}
}

func serviceOf(attrs []attribute.KeyValue) string {
	for _, a := range attrs {
		if a.Key == "service.name" {
			return a.Value.AsString()
		}
	}
	return ""
}

// TestCertificateRotationWithoutFailedRequests replaces order-service's
// certificate files while a caller keeps opening new connections: new
// handshakes get the new certificate and no request fails.
func TestCertificateRotationWithoutFailedRequests(t *testing.T) {
	e := start(t)
	client := e.clientWithCert(t, e.CA, stack.Gateway)
	var served sync.Map // serial -> true
	var failures, total atomic.Int64
	client.Transport.(*http.Transport).TLSClientConfig.VerifyConnection = func(cs tls.ConnectionState) error {
		served.Store(cs.PeerCertificates[0].SerialNumber.String(), true)
		return nil
	}
	url := e.Endpoints.Services[stack.Order].API + "/api/v1/catalog"

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			total.Add(1)
			resp, err := client.Get(url)
			if err != nil {
				failures.Add(1)
				t.Logf("request failed: %v", err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failures.Add(1)
			}
		}
	})

	time.Sleep(200 * time.Millisecond)
	certPEM, keyPEM, err := e.CA.Issue(stack.Order, []string{"localhost", stack.Order}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("issued certificate is not PEM")
	}
	newCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// Write the key first, then the certificate: the reloader refuses a
	// mismatched pair and keeps serving the old one until both are new.
	writeAtomic(t, filepath.Join(e.PKIDir, stack.Order+".key"), keyPEM)
	writeAtomic(t, filepath.Join(e.PKIDir, stack.Order+".crt"), certPEM)

	waitFor(t, 5*time.Second, "the new certificate on new handshakes", func() bool {
		_, ok := served.Load(newCert.SerialNumber.String())
		return ok
	})
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed during rotation", f, total.Load())
	}
	if total.Load() < 10 {
		t.Fatalf("only %d requests made: the test proved nothing", total.Load())
	}
}

func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
