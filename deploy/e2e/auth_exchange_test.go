package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

// allSecEvents sums every rampart_security_events_total series of svc:
// the refusal tables assert that it moves by exactly one.
func (e *env) allSecEvents(t testing.TB, svc string) float64 {
	t.Helper()
	resp, err := http.Get(e.Endpoints.Services[svc].Ops + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", svc, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "rampart_security_events_total{") {
			var v float64
			if _, err := fmt.Sscan(strings.Fields(line)[1], &v); err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// certThumbprint is the RFC 8705 x5t#S256 of the certificate a client
// made by clientWithCert presents.
func certThumbprint(t testing.TB, c *http.Client) string {
	t.Helper()
	certs := c.Transport.(*http.Transport).TLSClientConfig.Certificates
	if len(certs) == 0 {
		t.Fatal("client presents no certificate")
	}
	sum := sha256.Sum256(certs[0].Certificate[0])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func exchangeForm(subject, audience, scope string) url.Values {
	return url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subject},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {audience},
		"scope":              {scope},
	}
}

// TestTokenExchangeOnBehalfOfAUser: order-service, authenticated by its
// mTLS certificate alone (tls_client_auth, straight to auth-service's mesh
// API), exchanges a user's access token for one that names user-service as
// its only audience, carries the intersection of the scopes asked and
// held, the user as sub, order-service as act.sub, the caller's
// certificate thumbprint as cnf.x5t#S256, and lives at most five minutes.
// The result is useless at the public edge (wrong audience).
func TestTokenExchangeOnBehalfOfAUser(t *testing.T) {
	e := start(t)
	user := e.Credentials.Accounts["user"]
	tok := e.userTokens(t, user, "openid users:read orders:read")
	subject := tok["access_token"].(string)
	userClaims := claimsOf(t, subject)
	orderSvc := e.clientWithCert(t, e.CA, stack.Order)
	authAPI := e.Endpoints.Services[stack.Auth].API
	total0 := e.allSecEvents(t, stack.Auth)

	st, errc, out := e.postTokenAt(t, orderSvc, authAPI,
		with(exchangeForm(subject, stack.User, "users:read orders:write admin"), "client_id", stack.Order), [2]string{})
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %s %v", st, errc, out)
	}
	if out["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" || out["token_type"] != "Bearer" ||
		out["scope"] != "users:read" || out["refresh_token"] != nil {
		t.Errorf("response %v", out)
	}
	if exp, _ := out["expires_in"].(float64); exp <= 0 || exp > 300 {
		t.Errorf("expires_in %v", out["expires_in"])
	}
	if d := e.allSecEvents(t, stack.Auth) - total0; d != 0 {
		t.Errorf("a successful exchange emitted %v security events", d)
	}
	raw := out["access_token"].(string)
	c := claimsOf(t, raw)
	aud := anyStrings(c["aud"])
	if s, ok := c["aud"].(string); ok {
		aud = []string{s}
	}
	act, _ := c["act"].(map[string]any)
	cnf, _ := c["cnf"].(map[string]any)
	switch {
	case !slices.Equal(aud, []string{stack.User}):
		t.Errorf("aud %v", c["aud"])
	case c["sub"] != userClaims["sub"] || c["iss"] != userClaims["iss"]:
		t.Errorf("sub/iss %v %v, user token %v %v", c["sub"], c["iss"], userClaims["sub"], userClaims["iss"])
	case act == nil || act["sub"] != mtls.ServiceID(stack.Order):
		t.Errorf("act %v", c["act"])
	case cnf == nil || cnf["x5t#S256"] != certThumbprint(t, orderSvc):
		t.Errorf("cnf %v, certificate thumbprint %s", c["cnf"], certThumbprint(t, orderSvc))
	case c["client_id"] != stack.Order || c["scope"] != "users:read":
		t.Errorf("client_id %v scope %v", c["client_id"], c["scope"])
	case !slices.Equal(anyStrings(c["roles"]), anyStrings(userClaims["roles"])):
		t.Errorf("roles %v, user's %v", c["roles"], userClaims["roles"])
	case c["jti"] == userClaims["jti"] || c["jti"] == nil:
		t.Errorf("jti %v", c["jti"])
	}
	iat, exp := c["iat"].(float64), c["exp"].(float64)
	if exp-iat > 300 || exp > userClaims["exp"].(float64) {
		t.Errorf("lifetime %v s, exp %v, user token exp %v", exp-iat, exp, userClaims["exp"])
	}

	t.Run("the exchanged token is refused at the public edge (audience)", func(t *testing.T) {
		before := e.secEvents(t, stack.Gateway, "token.rejected", "audience")
		resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts", raw, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if d := e.secEvents(t, stack.Gateway, "token.rejected", "audience") - before; d != 1 {
			t.Errorf("gateway token.rejected/audience: %v", d)
		}
	})

}

// with returns a copy of v with k set to val.
func with(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for key, vals := range v {
		out[key] = append([]string(nil), vals...)
	}
	out.Set(k, val)
	return out
}

// TestTokenExchangeRefusals: one row per way to abuse token exchange, each
// asserting the status, the RFC 6749/8693 error code and exactly one
// security event of auth-service (the counter for its type and reason, the
// sum of all its counters, and the CloudEvent on RAMPART_SECURITY).
func TestTokenExchangeRefusals(t *testing.T) {
	e := start(t)
	user := e.Credentials.Accounts["user"]
	tok := e.userTokens(t, user, "openid users:read orders:read")
	subject := tok["access_token"].(string)
	sub := accountID(t, tok)
	authAPI := e.Endpoints.Services[stack.Auth].API
	orderSvc := e.clientWithCert(t, e.CA, stack.Order)
	security := e.streamEvents(t, natsx.StreamSecurity, "rampart.security.auth-service.>")

	// A token that was valid and has been revoked by its client (RFC 7009).
	revokedTok := e.userTokens(t, user, "openid users:read")["access_token"].(string)
	rv, err := e.public.PostForm(e.Endpoints.Gateway+"/oauth2/revoke", url.Values{"token": {revokedTok}, "client_id": {"rampart-demo"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = rv.Body.Close()
	waitFor(t, 2*time.Second, "the revoked token to be refused", func() bool { return e.userinfoStatus(t, revokedTok) == 401 })

	// order-service's own client_credentials token is not a user's.
	st, _, cc := e.postTokenAt(t, orderSvc, authAPI, url.Values{"grant_type": {"client_credentials"}, "client_id": {stack.Order}, "scope": {"users:read"}}, [2]string{})
	if st != http.StatusOK {
		t.Fatalf("client_credentials: %d %v", st, cc)
	}
	// An already exchanged token cannot be exchanged again.
	st, _, ex := e.postTokenAt(t, orderSvc, authAPI, with(exchangeForm(subject, stack.User, "users:read"), "client_id", stack.Order), [2]string{})
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, ex)
	}

	rows := []struct {
		name       string
		client     *http.Client
		base       string
		form       url.Values
		basic      [2]string
		wantStatus int
		wantError  string
		event      string // type/reason
		eventSub   string // the event's subject, when known
	}{
		{name: "no client certificate (through the gateway)", client: e.public, base: e.Endpoints.Gateway,
			form:       with(exchangeForm(subject, stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 401, wantError: "invalid_client", event: "auth.client.failed/bad_certificate"},
		{name: "another service's certificate claiming order-service", client: e.clientWithCert(t, e.CA, stack.User), base: authAPI,
			form:       with(exchangeForm(subject, stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 401, wantError: "invalid_client", event: "auth.client.failed/bad_certificate"},
		{name: "public client", client: e.public, base: e.Endpoints.Gateway,
			form:       with(exchangeForm(subject, stack.User, "users:read"), "client_id", "rampart-demo"),
			wantStatus: 400, wantError: "unauthorized_client", event: "auth.grant.invalid/client_mismatch"},
		{name: "confidential client", client: e.public, base: e.Endpoints.Gateway,
			form: exchangeForm(subject, stack.User, "users:read"), basic: [2]string{"rampart-machine", e.clientSecret(t, "rampart-machine")},
			wantStatus: 400, wantError: "unauthorized_client", event: "auth.grant.invalid/client_mismatch"},
		{name: "service not registered for exchange", client: e.clientWithCert(t, e.CA, stack.User), base: authAPI,
			form:       with(exchangeForm(subject, stack.Order, "users:read"), "client_id", stack.User),
			wantStatus: 400, wantError: "unauthorized_client", event: "auth.grant.invalid/client_mismatch"},
		{name: "revoked subject token", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(revokedTok, stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_grant", event: "token.rejected/revoked"},
		{name: "forged subject token (attacker's key, our kid)", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(forge(t, subject, func(map[string]any) {}), stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_grant", event: "token.rejected/signature"},
		{name: "forged subject token (unknown kid)", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(forge(t, subject, func(h map[string]any) { h["kid"] = "attacker" }), stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_grant", event: "token.rejected/unknown_key"},
		{name: "garbage subject token", client: orderSvc, base: authAPI,
			form:       with(exchangeForm("not-a-token", stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_grant", event: "token.rejected/malformed"},
		{name: "exchanged token exchanged again", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(ex["access_token"].(string), stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_grant", event: "token.rejected/audience"},
		{name: "a service's own client_credentials token", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(cc["access_token"].(string), stack.User, "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_grant", event: "token.rejected/claims", eventSub: stack.Order},
		{name: "audience not allowed for the client", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(subject, stack.Order, "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_target", event: "auth.grant.invalid/scope"},
		{name: "audience the public API", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(subject, "rampart-api", "users:read"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_target", event: "auth.grant.invalid/scope"},
		{name: "scope escalation: a scope the user does not hold", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(subject, stack.User, "orders:write"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_scope", event: "auth.grant.invalid/scope", eventSub: sub},
		{name: "scope escalation: admin", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(subject, stack.User, "admin"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_scope", event: "auth.grant.invalid/scope", eventSub: sub},
		{name: "scope escalation: a scope the client is not registered for", client: orderSvc, base: authAPI,
			form:       with(exchangeForm(subject, stack.User, "openid"), "client_id", stack.Order),
			wantStatus: 400, wantError: "invalid_scope", event: "auth.grant.invalid/scope", eventSub: sub},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			typ, reason, _ := strings.Cut(r.event, "/")
			before, total := e.secEvents(t, stack.Auth, typ, reason), e.allSecEvents(t, stack.Auth)
			st, errc, out := e.postTokenAt(t, r.client, r.base, r.form, r.basic)
			if st != r.wantStatus || errc != r.wantError {
				t.Errorf("got %d %q, want %d %q (%v)", st, errc, r.wantStatus, r.wantError, out)
			}
			if out["access_token"] != nil {
				t.Error("a refused exchange returned a token")
			}
			if d := e.secEvents(t, stack.Auth, typ, reason) - before; d != 1 {
				t.Errorf("%s events: %v, want exactly one", r.event, d)
			}
			if d := e.allSecEvents(t, stack.Auth) - total; d != 1 {
				t.Errorf("auth-service emitted %v security events, want exactly one", d)
			}
			ev := security.find(r.event, func(ev natsx.Event) bool {
				d := dataOf(t, ev)
				return d["type"] == typ && d["reason"] == reason
			})
			if d := dataOf(t, ev); r.eventSub != "" && d["subject"] != r.eventSub {
				t.Errorf("event subject %v, want %s", d["subject"], r.eventSub)
			}
		})
	}
}
