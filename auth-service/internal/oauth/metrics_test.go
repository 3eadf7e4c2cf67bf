package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-go/rampart/auth-service/internal/keys"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/policy"
)

// sample is the value of the series of name whose labels include want, and
// whether it exists, read through the registry as a scrape would.
func sample(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// issued is rampart_auth_tokens_issued_total for every grant label.
func issued(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, g := range []string{"authorization_code", "refresh_token", "client_credentials", "token_exchange"} {
		v, ok := sample(t, reg, "rampart_auth_tokens_issued_total", map[string]string{"grant": g})
		if !ok {
			t.Fatalf("no rampart_auth_tokens_issued_total{grant=%q} series", g)
		}
		out[g] = v
	}
	return out
}

// token posts form to the token endpoint, over mTLS as order-service when
// mtls is set.
func (f *exchangeFixture) token(t *testing.T, form url.Values, mtls bool) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mtls {
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{f.cert}}
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

// authCode stores an authorization code for a new USER account, in a new
// browser session (its id in f.sessionID), as the login form would after a
// successful sign-in, and returns the code and its PKCE verifier.
func (f *exchangeFixture) authCode(t *testing.T, scope string) (code, verifier string) {
	t.Helper()
	ctx := context.Background()
	acct, _, err := f.srv.accounts.Seed(ctx, "metrics-"+randomToken()[:8]+"@example.com",
		"correct horse battery staple 42", "Metrics", []string{policy.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	code, verifier = randomToken(), randomToken()
	sum := sha256.Sum256([]byte(verifier))
	now := f.now.UTC()
	f.sessionID = randomToken()
	sess := store.Session{IDHash: hash(f.sessionID), AccountID: acct.ID, AuthTime: now, ExpiresAt: now.Add(time.Hour)}
	if err := f.srv.db.Create(&sess).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.srv.db.Create(&store.AuthCode{
		CodeHash: hash(code), ClientID: DemoClientID, AccountID: acct.ID,
		RedirectURI: "http://127.0.0.1:53682/callback", Scope: scope,
		CodeChallenge: base64.RawURLEncoding.EncodeToString(sum[:]), SessionIDHash: sess.IDHash,
		AuthTime: now, ExpiresAt: now.Add(time.Minute),
	}).Error; err != nil {
		t.Fatal(err)
	}
	return code, verifier
}

// TestTokensIssuedAreCountedByGrant: every successful token response adds
// one to rampart_auth_tokens_issued_total of its grant, and a refused
// request adds nothing anywhere.
func TestTokensIssuedAreCountedByGrant(t *testing.T) {
	f := newExchangeFixture(t)
	want := map[string]float64{"authorization_code": 0, "refresh_token": 0, "client_credentials": 0, "token_exchange": 0}
	check := func(step string) {
		t.Helper()
		got := issued(t, f.reg)
		for g, v := range want {
			if got[g] != v {
				t.Errorf("after %s: grant=%s is %v, want %v", step, g, got[g], v)
			}
		}
	}
	check("start") // every grant is exported at 0 before it is used

	code, verifier := f.authCode(t, "openid offline_access")
	redeem := url.Values{
		"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
	}
	st, out := f.token(t, redeem, false)
	if st != http.StatusOK {
		t.Fatalf("code redemption: %d %v", st, out)
	}
	want["authorization_code"]++
	check("a code redemption")

	// A wrong PKCE verifier is refused (and burns the code).
	code, _ = f.authCode(t, "openid")
	bad := url.Values{
		"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
	}
	if st, _ := f.token(t, bad, false); st != http.StatusBadRequest {
		t.Fatalf("wrong verifier: %d, want 400", st)
	}
	check("a refused redemption")

	refresh := url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {out["refresh_token"].(string)}}
	if st, out := f.token(t, refresh, false); st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, out)
	}
	want["refresh_token"]++
	check("a refresh")

	cc := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"order-service"}, "scope": {"users:read"}, "audience": {"user-service"}}
	if st, out := f.token(t, cc, true); st != http.StatusOK {
		t.Fatalf("client_credentials: %d %v", st, out)
	}
	want["client_credentials"]++
	check("client_credentials")

	subject, _ := f.userToken(t, "")
	if st, out := f.exchange(t, subject, "user-service", "users:read"); st != http.StatusOK {
		t.Fatalf("token exchange: %d %v", st, out)
	}
	want["token_exchange"]++
	check("a token exchange")

	if st, _ := f.exchange(t, subject, "rampart-api", "users:read"); st != http.StatusBadRequest {
		t.Fatalf("exchange for the public API: %d, want 400", st)
	}
	if st, _ := f.token(t, url.Values{"grant_type": {"password"}, "client_id": {DemoClientID}}, false); st != http.StatusBadRequest {
		t.Fatalf("password grant: %d, want 400", st)
	}
	check("refused requests")
}

// TestActiveRefreshFamiliesGauge: a code redemption with offline_access
// makes one active family and a rotation keeps it one; a revoked family
// and one whose refresh token idled out do not count, and without
// offline_access there is nothing to refresh. Scrapes within 5 s share one
// count. On SQLite, and on PostgreSQL when RAMPART_TEST_POSTGRES_DSN is set
// (the query and the partial index must work on both).
func TestActiveRefreshFamiliesGauge(t *testing.T) {
	dbxtest.Each(t, testActiveRefreshFamiliesGauge)
}

func testActiveRefreshFamiliesGauge(t *testing.T, dbURL string) {
	f := newExchangeFixtureOn(t, dbURL)
	active := func() float64 {
		t.Helper()
		v, ok := sample(t, f.reg, "rampart_auth_refresh_families_active", nil)
		if !ok {
			t.Fatal("no rampart_auth_refresh_families_active series")
		}
		return v
	}
	redeem := func(scope string) map[string]any {
		t.Helper()
		code, verifier := f.authCode(t, scope)
		st, out := f.token(t, url.Values{
			"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
		}, false)
		if st != http.StatusOK {
			t.Fatalf("code redemption: %d %v", st, out)
		}
		return out
	}
	if got := active(); got != 0 {
		t.Fatalf("empty database: %v active families", got)
	}

	out := redeem("openid offline_access")
	redeem("openid") // a family without a refresh token
	if got := active(); got != 0 {
		t.Errorf("a scrape within 5 s of the last recounted: %v, want the cached 0", got)
	}
	f.now = f.now.Add(familiesCacheTTL)
	if got := active(); got != 1 {
		t.Errorf("after one offline_access redemption: %v active families, want 1", got)
	}

	refresh := url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {out["refresh_token"].(string)}}
	if st, out := f.token(t, refresh, false); st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, out)
	}
	f.now = f.now.Add(familiesCacheTTL)
	if got := active(); got != 1 {
		t.Errorf("after a rotation: %v active families, want 1", got)
	}

	// A revoked family (logout, refresh reuse, erasure) no longer counts.
	second := redeem("openid offline_access")
	f.now = f.now.Add(familiesCacheTTL)
	if got := active(); got != 2 {
		t.Errorf("after a second offline_access redemption: %v active families, want 2", got)
	}
	var rt store.RefreshToken
	if err := f.srv.db.Where("token_hash = ?", hash(second["refresh_token"].(string))).Take(&rt).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.srv.db.Model(&store.TokenFamily{}).Where("id = ?", rt.FamilyID).Update("revoked_at", f.now.UTC()).Error; err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(familiesCacheTTL)
	if got := active(); got != 1 {
		t.Errorf("after revoking one family: %v active families, want 1", got)
	}

	// A refresh token unused past the idle lifetime leaves nothing to refresh.
	f.now = f.now.Add(f.srv.cfg.RefreshIdleTTL + time.Second)
	if got := active(); got != 0 {
		t.Errorf("after the idle lifetime: %v active families, want 0", got)
	}
}

// TestSigningKeyAgeGauge: the age of each algorithm's current key grows
// with the clock and restarts at a rotation.
func TestSigningKeyAgeGauge(t *testing.T) {
	f := newExchangeFixture(t)
	age := func(alg keys.Alg) float64 {
		t.Helper()
		v, ok := sample(t, f.reg, "rampart_auth_signing_key_age_seconds", map[string]string{"alg": string(alg)})
		if !ok {
			t.Fatalf("no rampart_auth_signing_key_age_seconds{alg=%q}", alg)
		}
		return v
	}
	f.now = f.now.Add(90 * time.Minute)
	for _, alg := range []keys.Alg{keys.ES256, keys.RS256} {
		if got := age(alg); got != 5400 {
			t.Errorf("%s key age %v, want 5400", alg, got)
		}
	}
	if err := f.keys.Rotate(); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Minute)
	for _, alg := range []keys.Alg{keys.ES256, keys.RS256} {
		if got := age(alg); got != 60 {
			t.Errorf("%s key age after rotation %v, want 60", alg, got)
		}
	}
}
