package authn_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rampart-go/rampart/shared/authn"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/secevent/seceventtest"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

// certFor issues a leaf for a service identity and parses it.
func certFor(t *testing.T, ca *mtls.CA, name string) *x509.Certificate {
	t.Helper()
	certPEM, _, err := ca.Issue(name, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestBindingAndPeerGuards: a cnf-bound token works only on a connection
// made with its certificate; RequireBinding refuses unbound tokens;
// RequirePeer narrows a route to named services. Each refusal emits
// exactly one event of the right type and reason.
func TestBindingAndPeerGuards(t *testing.T) {
	gin.SetMode(gin.TestMode)
	ca, err := mtls.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	orderA, orderB, gateway := certFor(t, ca, "order-service"), certFor(t, ca, "order-service"), certFor(t, ca, "gateway")
	iss := tokenstest.NewIssuer(t, "https://rampart.test", "user-service")
	ev := &seceventtest.Recorder{}

	e := gin.New()
	e.GET("/bound", authn.RequirePeer(ev, "order-service"), authn.Middleware(iss.Verifier(t), ev), authn.RequireBinding(ev),
		authn.Require(policy.Rule{AllScopes: []string{"users:read"}}, ev), func(c *gin.Context) {
			c.String(http.StatusOK, authn.RawToken(c))
		})
	e.GET("/any", authn.Middleware(iss.Verifier(t), ev), func(c *gin.Context) { c.Status(http.StatusOK) })

	boundTo := func(cert *x509.Certificate) string {
		return iss.Sign(t, func(_, c map[string]any) {
			c["scope"] = "users:read"
			c["cnf"] = map[string]any{"x5t#S256": mtls.Thumbprint(cert)}
		})
	}
	unbound := iss.Sign(t, func(_, c map[string]any) { c["scope"] = "users:read" })

	cases := []struct {
		name   string
		path   string
		peer   *x509.Certificate
		token  string
		want   int
		typ    secevent.Type
		reason secevent.Reason
	}{
		{"bound token, its certificate", "/bound", orderA, boundTo(orderA), 200, "", ""},
		{"bound token, same identity, other certificate", "/bound", orderB, boundTo(orderA), 401, secevent.TokenRejected, secevent.ReasonBinding},
		{"unbound token on a binding route", "/bound", orderA, unbound, 401, secevent.TokenRejected, secevent.ReasonBinding},
		{"gateway identity", "/bound", gateway, boundTo(gateway), 403, secevent.MTLSRejected, secevent.ReasonIdentityNotAllowed},
		{"no certificate at all", "/bound", nil, boundTo(orderA), 403, secevent.MTLSRejected, secevent.ReasonIdentityNotAllowed},
		{"bound token replayed without its certificate", "/any", nil, boundTo(orderA), 401, secevent.TokenRejected, secevent.ReasonBinding},
		{"bound token replayed by another service", "/any", gateway, boundTo(orderA), 401, secevent.TokenRejected, secevent.ReasonBinding},
		{"unbound token where binding is optional", "/any", nil, unbound, 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			req.TLS = &tls.ConnectionState{}
			if tc.peer != nil {
				req.TLS.PeerCertificates = []*x509.Certificate{tc.peer}
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			got := ev.Take()
			if tc.typ == "" {
				if len(got) != 0 {
					t.Fatalf("events %+v on success", got)
				}
				if tc.path == "/bound" && rec.Body.String() != tc.token {
					t.Error("RawToken did not return the verified token")
				}
				return
			}
			if len(got) != 1 || got[0].Type != tc.typ || got[0].Reason != tc.reason {
				t.Fatalf("events %+v, want exactly one %s/%s", got, tc.typ, tc.reason)
			}
			if tc.want == 401 && rec.Header().Get("WWW-Authenticate") != `Bearer realm="rampart", error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}
