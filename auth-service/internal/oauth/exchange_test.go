package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-go/rampart/auth-service/internal/account"
	"github.com/rampart-go/rampart/auth-service/internal/keys"
	"github.com/rampart-go/rampart/auth-service/internal/password"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/revocation"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/secevent/seceventtest"
)

// exchangeFixture is an authorization server on SQLite with a settable
// clock and an order-service client certificate.
type exchangeFixture struct {
	srv    *Server
	engine *gin.Engine
	events *seceventtest.Recorder
	now    time.Time
	cert   *x509.Certificate
	keys   *keys.Manager
	reg    *prometheus.Registry
	// sessionID is the session cookie of the last authCode.
	sessionID string
}

func newExchangeFixture(t *testing.T) *exchangeFixture {
	t.Helper()
	return newExchangeFixtureOn(t, "sqlite://"+t.TempDir()+"/auth.db")
}

// newExchangeFixtureOn is newExchangeFixture on the database at dbURL.
func newExchangeFixtureOn(t *testing.T, dbURL string) *exchangeFixture {
	t.Helper()
	return newExchangeFixtureWith(t, dbURL, Config{Throttle: ThrottleOptions{PerMinute: 1 << 30, Burst: 1 << 30}})
}

// newExchangeFixtureWith is newExchangeFixtureOn with cfg (its issuer is set).
func newExchangeFixtureWith(t *testing.T, dbURL string, cfg Config) *exchangeFixture {
	t.Helper()
	return newFixture(t, dbURL, cfg, nil)
}

// newRevocationFixture is newExchangeFixture with a real revocation list
// on an embedded NATS server, for tests of what revoking denies.
func newRevocationFixture(t *testing.T) *exchangeFixture {
	t.Helper()
	return newRevocationFixtureOn(t, "sqlite://"+t.TempDir()+"/auth.db")
}

// newRevocationFixtureOn is newRevocationFixture on the database at dbURL.
func newRevocationFixtureOn(t *testing.T, dbURL string) *exchangeFixture {
	t.Helper()
	return newFixture(t, dbURL, Config{Throttle: ThrottleOptions{PerMinute: 1 << 30, Burst: 1 << 30}}, openRevocations(t))
}

// openRevocations starts an embedded NATS server with the contract's
// streams and returns a running revocation list on it.
func openRevocations(t *testing.T) *revocation.List {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := natsx.Connect(ctx, natsx.Options{URL: srv.ClientURL(), Name: "oauth-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	l, err := revocation.Open(ctx, revocation.Options{JS: js, NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	go l.Run(ctx)
	return l
}

func newFixture(t *testing.T, dbURL string, cfg Config, revs *revocation.List) *exchangeFixture {
	t.Helper()
	cfg.Issuer = "https://rampart.test"
	ctx := context.Background()
	db := dbxtest.Open(t, dbURL, store.Migrations)
	if err := RegisterClients(ctx, db, DefaultClients("")); err != nil {
		t.Fatal(err)
	}
	f := &exchangeFixture{events: &seceventtest.Recorder{}, now: time.Now().Truncate(time.Second), reg: prometheus.NewRegistry()}
	km, err := keys.Open(keys.Options{Dir: t.TempDir(), Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.keys = km
	// Cheap argon2id: the fixture's accounts are for grants, not hashing.
	hasher, err := password.NewHasher(password.Params{MemoryKiB: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.srv, err = New(cfg,
		Deps{DB: db, Keys: km, Accounts: account.New(db, hasher, func() {}), Events: f.events, Revocations: revs,
			Now: func() time.Time { return f.now }, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	f.engine = gin.New()
	f.srv.Routes(f.engine)
	ca, err := mtls.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue("order-service", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if f.cert, err = x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	return f
}

// userToken mints a user's access token at the current clock, recorded in
// a family when family is not empty.
func (f *exchangeFixture) userToken(t *testing.T, family string) (raw, jti string) {
	t.Helper()
	raw, jti, exp, err := f.srv.mintAccess(context.Background(), accessSpec{
		Subject: "8b0f2d4e-0000-4000-8000-000000000001", Audience: "rampart-api", ClientID: DemoClientID,
		Scope: "openid users:read orders:read", Roles: []string{"USER"}, TTL: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if family != "" {
		if err := f.srv.db.Create(&store.FamilyAccessToken{JTI: jti, FamilyID: family, ExpiresAt: exp}).Error; err != nil {
			t.Fatal(err)
		}
	}
	return raw, jti
}

// family stores a token family of the fixture's user, revoked when
// revoked is set, and returns its id.
func (f *exchangeFixture) family(t *testing.T, revoked bool) string {
	t.Helper()
	now := f.now.UTC()
	fam := store.TokenFamily{
		ID: uuid.NewString(), AccountID: "8b0f2d4e-0000-4000-8000-000000000001", ClientID: DemoClientID,
		SessionIDHash: hash(randomToken()), Scope: "openid users:read orders:read", AuthTime: now,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
	if revoked {
		fam.RevokedAt = &now
	}
	if err := f.srv.db.Create(&fam).Error; err != nil {
		t.Fatal(err)
	}
	return fam.ID
}

// exchange posts a token-exchange request as order-service over mTLS.
func (f *exchangeFixture) exchange(t *testing.T, subject, audience, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{
		"grant_type": {GrantTokenExchange}, "client_id": {"order-service"}, "subject_token": {subject},
		"subject_token_type": {TokenTypeAccess}, "audience": {audience}, "scope": {scope},
	}
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{f.cert}}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func onlyEvent(t *testing.T, evs []secevent.Event, typ secevent.Type, reason secevent.Reason) {
	t.Helper()
	if len(evs) != 1 || evs[0].Type != typ || evs[0].Reason != reason {
		t.Fatalf("events %+v, want exactly one %s/%s", evs, typ, reason)
	}
}

// TestTokenExchangeLifetimeFollowsTheSubjectToken: the exchanged token
// lives at most 5 minutes and never past the user's token; an expired
// subject token is refused with one token.rejected/expired.
func TestTokenExchangeLifetimeFollowsTheSubjectToken(t *testing.T) {
	f := newExchangeFixture(t)
	subject, _ := f.userToken(t, "")

	st, out := f.exchange(t, subject, "user-service", "users:read")
	if st != http.StatusOK || out["expires_in"] != float64(300) {
		t.Fatalf("fresh subject: %d %v", st, out)
	}
	f.events.Take()

	f.now = f.now.Add(8 * time.Minute) // two minutes left on the user's token
	st, out = f.exchange(t, subject, "user-service", "users:read")
	if st != http.StatusOK || out["expires_in"] != float64(120) {
		t.Fatalf("subject with 2 minutes left: %d %v", st, out)
	}
	var claims AccessClaims
	if _, _, err := jwt.NewParser().ParseUnverified(out["access_token"].(string), &claims); err != nil {
		t.Fatal(err)
	}
	if got := claims.ExpiresAt.Sub(claims.IssuedAt.Time); got != 2*time.Minute {
		t.Errorf("exchanged token lifetime %v, want 2m", got)
	}
	if len(f.events.Take()) != 0 {
		t.Error("a successful exchange emitted security events")
	}

	f.now = f.now.Add(2*time.Minute + 31*time.Second) // past exp and the 30 s leeway
	st, out = f.exchange(t, subject, "user-service", "users:read")
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("expired subject: %d %v", st, out)
	}
	onlyEvent(t, f.events.Take(), secevent.TokenRejected, secevent.ReasonExpired)
}

// TestTokenExchangeJoinsTheSubjectsFamily: a token derived from a token of
// a family is recorded in that family, so revoking the family (logout,
// refresh reuse, code replay) denies the derived token too.
func TestTokenExchangeJoinsTheSubjectsFamily(t *testing.T) {
	f := newExchangeFixture(t)
	family := f.family(t, false)
	subject, _ := f.userToken(t, family)
	st, out := f.exchange(t, subject, "user-service", "users:read")
	if st != http.StatusOK {
		t.Fatalf("%d %v", st, out)
	}
	var claims AccessClaims
	if _, _, err := jwt.NewParser().ParseUnverified(out["access_token"].(string), &claims); err != nil {
		t.Fatal(err)
	}
	var row store.FamilyAccessToken
	if err := f.srv.db.Where("jti = ?", claims.ID).Take(&row).Error; err != nil || row.FamilyID != family {
		t.Fatalf("exchanged token not in the family: %+v %v", row, err)
	}
	if !row.ExpiresAt.Equal(claims.ExpiresAt.Time) {
		t.Errorf("recorded expiry %v, token expiry %v", row.ExpiresAt, claims.ExpiresAt.Time)
	}

	// A token issued outside any family (none recorded) still exchanges.
	loose, _ := f.userToken(t, "")
	if st, out := f.exchange(t, loose, "user-service", "users:read"); st != http.StatusOK {
		t.Fatalf("subject outside a family: %d %v", st, out)
	}
}

// TestTokenExchangeRefusesTheWrongAudienceAndScope: the public API is not
// an exchange audience, nor is a service the client is not registered to
// call; scopes the user does not hold are an escalation. Each is one
// auth.grant.invalid/scope.
func TestTokenExchangeRefusesTheWrongAudienceAndScope(t *testing.T) {
	f := newExchangeFixture(t)
	subject, _ := f.userToken(t, "")
	for _, c := range []struct {
		name, audience, scope, wantErr string
	}{
		{"the public API", "rampart-api", "users:read", "invalid_target"},
		{"a service the client may not call", "order-service", "users:read", "invalid_target"},
		{"two audiences", "user-service order-service", "users:read", "invalid_target"},
		{"a scope the user lacks", "user-service", "orders:write", "invalid_scope"},
		{"admin", "user-service", "admin", "invalid_scope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out := f.exchange(t, subject, c.audience, c.scope)
			if st != http.StatusBadRequest || out["error"] != c.wantErr {
				t.Fatalf("%d %v, want 400 %s", st, out, c.wantErr)
			}
			onlyEvent(t, f.events.Take(), secevent.GrantInvalid, secevent.ReasonScope)
		})
	}
}

// TestTokenExchangeRefusesASubjectOfARevokedFamily: a subject token whose
// family has been revoked is not exchanged, even in the moment before its
// own revocation reaches the deny-list: the exchanged token would join a
// family already past its revocation, and nothing would ever deny it.
func TestTokenExchangeRefusesASubjectOfARevokedFamily(t *testing.T) {
	f := newExchangeFixture(t)
	subject, _ := f.userToken(t, f.family(t, true))
	st, out := f.exchange(t, subject, "user-service", "users:read")
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("%d %v, want 400 invalid_grant", st, out)
	}
	onlyEvent(t, f.events.Take(), secevent.TokenRejected, secevent.ReasonRevoked)
}
