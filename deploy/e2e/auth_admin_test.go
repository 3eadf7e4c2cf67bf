package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	authapp "github.com/rampart-go/rampart/auth-service/app"
	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

// eventStream reads one subject filter of a JetStream stream from its
// beginning, as the ops user.
type eventStream struct {
	t    testing.TB
	cons jetstream.Consumer
	subj string
}

// streamEvents subscribes to subject (wildcards allowed) on stream.
func (e *env) streamEvents(t testing.TB, stream, subject string) *eventStream {
	t.Helper()
	pool, err := mtls.LoadPool(e.Endpoints.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := natsx.Connect(ctx, natsx.Options{
		URL: e.Endpoints.NATS, Name: "e2e-" + stream, User: stack.OpsUser, Password: e.NATSPassword(stack.OpsUser),
		TLS: tlsClient(pool),
	})
	if err != nil {
		t.Fatalf("connect NATS as ops: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatalf("consumer on %s: %v", subject, err)
	}
	return &eventStream{t: t, cons: cons, subj: subject}
}

// domainEvents reads rampart.events.<suffix> from RAMPART_EVENTS.
func (e *env) domainEvents(t testing.TB, suffix string) *eventStream {
	t.Helper()
	return e.streamEvents(t, natsx.StreamEvents, natsx.SubjectEventsPrefix+suffix)
}

// next returns the next event, or false when none arrives within wait.
func (s *eventStream) next(wait time.Duration) (natsx.Event, string, bool) {
	s.t.Helper()
	msg, err := s.cons.Next(jetstream.FetchMaxWait(wait))
	if err != nil {
		return natsx.Event{}, "", false
	}
	var ev natsx.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		s.t.Fatalf("decode event on %s: %v", msg.Subject(), err)
	}
	return ev, msg.Subject(), true
}

// find skips events until match holds, failing after 10 s.
func (s *eventStream) find(what string, match func(natsx.Event) bool) natsx.Event {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ev, _, ok := s.next(time.Until(deadline))
		if ok && match(ev) {
			return ev
		}
	}
	s.t.Fatalf("no %s on %s", what, s.subj)
	return natsx.Event{}
}

// rest returns every further event that arrives within quiet of the last.
func (s *eventStream) rest(quiet time.Duration) []natsx.Event {
	s.t.Helper()
	var out []natsx.Event
	for {
		ev, _, ok := s.next(quiet)
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

// dataOf decodes an event's data.
func dataOf(t testing.TB, ev natsx.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	return m
}

// userTokens signs account in through a fresh browser, asking for scope,
// and redeems the code: the token response.
func (e *env) userTokens(t testing.TB, acct authapp.CredentialAccount, scope string) map[string]any {
	t.Helper()
	b := e.browser(t)
	verifier, state := oauth2.GenerateVerifier(), randomString(t)
	resp := e.login(t, b, e.authURL(t, verifier, state, callback, url.Values{"scope": {scope}}), acct.Email, acct.Password)
	st, errc, tok := e.redeem(t, e.codeFrom(t, resp, state), verifier)
	if st != http.StatusOK {
		t.Fatalf("redeem for %s: %d %s %v", acct.Email, st, errc, tok)
	}
	return tok
}

// claimsOf decodes a JWT's payload without verifying it.
func claimsOf(t testing.TB, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// call sends a JSON request through the gateway with a bearer token and
// returns the response with its body read.
func (e *env) call(t testing.TB, method, path, token string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			j, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequest(method, e.Endpoints.Gateway+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.public.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

// secEvents is the security-event counter of svc for type/reason.
func (e *env) secEvents(t testing.TB, svc, typ, reason string) float64 {
	t.Helper()
	return e.metric(t, svc, "rampart_security_events_total", secEventLabels(reason, svc, typ))
}

// accountID is the sub of a token.
func accountID(t testing.TB, tok map[string]any) string {
	t.Helper()
	sub, _ := claimsOf(t, tok["access_token"].(string))["sub"].(string)
	if sub == "" {
		t.Fatal("token has no sub")
	}
	return sub
}

type accountJSON struct {
	ID          string   `json:"id"`
	Email       string   `json:"email"`
	DisplayName string   `json:"display_name"`
	Roles       []string `json:"roles"`
	Disabled    bool     `json:"disabled"`
}

// TestAdminAPIRefusesWhoeverIsNotAnAdminWithTheAdminScope: every admin
// route, called with a USER's, a MANAGER's, and an ADMIN's token that lacks
// the admin scope, is 403 with exactly one access.denied (reason role, or
// scope for the admin) counted and published by auth-service, and changes
// nothing.
func TestAdminAPIRefusesWhoeverIsNotAnAdminWithTheAdminScope(t *testing.T) {
	e := start(t)
	creds := e.Credentials.Accounts
	// Everyone asks for admin; only the ADMIN's roles allow it, and the
	// third token is an ADMIN's that did not ask.
	userTok := e.userTokens(t, creds["user"], "openid admin users:read")
	managerTok := e.userTokens(t, creds["manager"], "openid admin users:read")
	adminNoScope := e.userTokens(t, creds["admin"], "openid users:read")
	for name, tok := range map[string]map[string]any{"user": userTok, "manager": managerTok, "admin": adminNoScope} {
		if sc, _ := tok["scope"].(string); strings.Contains(sc, "admin") {
			t.Fatalf("%s was granted %q", name, sc)
		}
	}
	victim := accountID(t, userTok)
	denied := e.streamEvents(t, natsx.StreamSecurity, "rampart.security.auth-service.access.denied")

	routes := []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/api/v1/auth/accounts", nil},
		{http.MethodGet, "/api/v1/auth/accounts/" + victim, nil},
		{http.MethodPatch, "/api/v1/auth/accounts/" + victim, map[string]any{"roles": []string{"ADMIN"}}},
		{http.MethodPost, "/api/v1/auth/accounts/" + victim + "/revoke", nil},
		{http.MethodPost, "/api/v1/auth/keys/rotate", nil},
	}
	callers := []struct {
		name, reason string
		tok          map[string]any
	}{
		{"USER", "role", userTok},
		{"MANAGER", "role", managerTok},
		{"ADMIN without the admin scope", "scope", adminNoScope},
	}
	for _, c := range callers {
		for _, r := range routes {
			t.Run(c.name+" "+r.method+" "+r.path, func(t *testing.T) {
				before := e.secEvents(t, stack.Auth, "access.denied", c.reason)
				resp, body := e.call(t, r.method, r.path, c.tok["access_token"].(string), r.body)
				if resp.StatusCode != http.StatusForbidden {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q", ct)
				}
				if after := e.secEvents(t, stack.Auth, "access.denied", c.reason); after-before != 1 {
					t.Errorf("access.denied/%s: %v → %v, want exactly one more", c.reason, before, after)
				}
				reqID := resp.Header.Get("X-Request-Id")
				ev := denied.find("access.denied for request "+reqID, func(ev natsx.Event) bool {
					return dataOf(t, ev)["request_id"] == reqID
				})
				d := dataOf(t, ev)
				if d["type"] != "access.denied" || d["reason"] != c.reason || d["service"] != stack.Auth ||
					d["subject"] != accountID(t, c.tok) || d["client_id"] != "rampart-demo" {
					t.Errorf("event data %v", d)
				}
			})
		}
	}
	// Nothing the refused calls asked for happened: the victim is still a
	// USER, and its token still works.
	admin := e.userTokens(t, creds["admin"], "openid admin")
	resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts/"+victim, admin["access_token"].(string), nil)
	var a accountJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil || !slices.Equal(a.Roles, []string{"USER"}) {
		t.Errorf("victim after refused calls: %d %s", resp.StatusCode, body)
	}
	if st := e.userinfoStatus(t, userTok["access_token"].(string)); st != http.StatusOK {
		t.Errorf("victim's token after a refused revoke: userinfo %d", st)
	}

	t.Run("no token is a 401 at the edge", func(t *testing.T) {
		before := e.secEvents(t, stack.Gateway, "token.rejected", "missing")
		resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts", "", nil)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="rampart"` {
			t.Fatalf("%d %q: %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		if after := e.secEvents(t, stack.Gateway, "token.rejected", "missing"); after-before != 1 {
			t.Errorf("token.rejected/missing: %v → %v", before, after)
		}
	})
}

// TestAdminAPIListsWithBoundedCursorPages: the list visits every account
// exactly once in pages of at most limit, the last page has no
// next_cursor, and limits outside 1..100 or a bad cursor are 400s.
func TestAdminAPIListsWithBoundedCursorPages(t *testing.T) {
	e := start(t)
	admin := e.userTokens(t, e.Credentials.Accounts["admin"], "openid admin")["access_token"].(string)
	want := map[string]bool{}
	for _, a := range e.Credentials.Accounts {
		want[strings.ToLower(a.Email)] = true
	}
	for i := range 5 {
		email := "listed-" + strings.ToLower(randomString(t)[:6]) + "@rampart.test"
		if st, body := e.register(t, email, "a perfectly fine passphrase", "Listed "+string(rune('A'+i))); st != http.StatusCreated {
			t.Fatalf("register: %d %s", st, body)
		}
		want[email] = true
	}

	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		q := url.Values{"limit": {"3"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts?"+q.Encode(), admin, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, resp.StatusCode, body)
		}
		if bytes.Contains(body, []byte("argon2")) || bytes.Contains(body, []byte("password")) {
			t.Fatalf("the list leaks password material: %s", body)
		}
		var page struct {
			Items      []accountJSON `json:"items"`
			NextCursor *string       `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Items) > 3 || (page.NextCursor != nil && len(page.Items) != 3) {
			t.Fatalf("page %d has %d items, next_cursor %v", pages, len(page.Items), page.NextCursor)
		}
		for _, a := range page.Items {
			if seen[a.Email] {
				t.Fatalf("%s listed twice", a.Email)
			}
			seen[a.Email] = true
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if len(seen) != len(want) || pages != (len(want)+2)/3 {
		t.Errorf("saw %d accounts in %d pages, want %d", len(seen), pages, len(want))
	}
	for email := range want {
		if !seen[email] {
			t.Errorf("%s never listed", email)
		}
	}

	t.Run("default page size is 20", func(t *testing.T) {
		resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts", admin, nil)
		var page struct {
			Items      []accountJSON `json:"items"`
			NextCursor *string       `json:"next_cursor"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.Items) != len(want) || page.NextCursor != nil {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	for _, q := range []string{"limit=0", "limit=101", "limit=-1", "limit=ten", "cursor=not-a-uuid", "cursor=%27%20OR%201%3D1"} {
		t.Run("refused: "+q, func(t *testing.T) {
			resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts?"+q, admin, nil)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("limit=100 is allowed", func(t *testing.T) {
		if resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts?limit=100", admin, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("read one", func(t *testing.T) {
		user := e.Credentials.Accounts["user"]
		id := accountID(t, e.userTokens(t, user, "openid"))
		resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts/"+id, admin, nil)
		var a accountJSON
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil ||
			a.ID != id || a.Email != user.Email || !slices.Equal(a.Roles, []string{"USER"}) || a.Disabled {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		for _, missing := range []string{"/api/v1/auth/accounts/00000000-0000-4000-8000-000000000000", "/api/v1/auth/accounts/nope"} {
			if resp, body := e.call(t, http.MethodGet, missing, admin, nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s: %d %s", missing, resp.StatusCode, body)
			}
		}
	})
}

// TestAdminRoleChangeRevokesTheSubjectsTokens: a role change is
// account.changed (security event and domain event on RAMPART_EVENTS) and
// revokes every token the account holds: the gateway answers 401 with
// token.rejected/revoked, the refresh token is dead, and a new login gets
// the new roles.
func TestAdminRoleChangeRevokesTheSubjectsTokens(t *testing.T) {
	e := start(t)
	admin := e.userTokens(t, e.Credentials.Accounts["admin"], "openid admin")["access_token"].(string)
	user := e.Credentials.Accounts["user"]
	old := e.userTokens(t, user, "openid offline_access users:read")
	id := accountID(t, old)
	changed := e.domainEvents(t, "account.>")

	// Before: the edge lets the token through (auth-service refuses it on
	// role, which is not a token rejection).
	if resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts", old["access_token"].(string), nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("before: %d %s", resp.StatusCode, body)
	}
	roles0, revoked0 := e.secEvents(t, stack.Auth, "account.changed", "roles"), e.secEvents(t, stack.Auth, "auth.token.revoked", "admin")

	resp, body := e.call(t, http.MethodPatch, "/api/v1/auth/accounts/"+id, admin, map[string]any{"roles": []string{"USER", "MANAGER"}})
	var a accountJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil || !slices.Equal(a.Roles, []string{"MANAGER", "USER"}) {
		t.Fatalf("PATCH roles: %d %s", resp.StatusCode, body)
	}
	if d := e.secEvents(t, stack.Auth, "account.changed", "roles") - roles0; d != 1 {
		t.Errorf("account.changed/roles events: %v", d)
	}
	if d := e.secEvents(t, stack.Auth, "auth.token.revoked", "admin") - revoked0; d != 1 {
		t.Errorf("auth.token.revoked/admin events: %v", d)
	}
	ev := changed.find("account.changed for "+id, func(ev natsx.Event) bool {
		return ev.Type == "account.changed" && ev.Subject == id
	})
	if d := dataOf(t, ev); d["id"] != id || d["change"] != "roles" || d["disabled"] != false ||
		strings.Join(anyStrings(d["roles"]), " ") != "MANAGER USER" || ev.Source != stack.Auth {
		t.Errorf("account.changed %+v data %v", ev, d)
	}
	if more := changed.rest(300 * time.Millisecond); len(more) != 0 {
		t.Errorf("a role change published %d more account events: %+v", len(more), more)
	}

	e.assertRevokedAtTheEdge(t, old)

	// A new login works and carries the new roles.
	fresh := e.userTokens(t, user, "openid users:read")
	if got := anyStrings(claimsOf(t, fresh["access_token"].(string))["roles"]); !slices.Equal(got, []string{"MANAGER", "USER"}) {
		t.Errorf("new token roles %v", got)
	}
	if st := e.userinfoStatus(t, fresh["access_token"].(string)); st != http.StatusOK {
		t.Errorf("new token: userinfo %d", st)
	}

	t.Run("the same roles again change nothing and revoke nothing", func(t *testing.T) {
		r0, v0 := e.secEvents(t, stack.Auth, "account.changed", "roles"), e.secEvents(t, stack.Auth, "auth.token.revoked", "admin")
		if resp, body := e.call(t, http.MethodPatch, "/api/v1/auth/accounts/"+id, admin, map[string]any{"roles": []string{"MANAGER", "USER"}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if e.secEvents(t, stack.Auth, "account.changed", "roles") != r0 || e.secEvents(t, stack.Auth, "auth.token.revoked", "admin") != v0 {
			t.Error("a no-op PATCH emitted events")
		}
		if st := e.userinfoStatus(t, fresh["access_token"].(string)); st != http.StatusOK {
			t.Errorf("a no-op PATCH revoked the token: userinfo %d", st)
		}
	})
	for name, body := range map[string]string{
		"unknown role":   `{"roles":["ROOT"]}`,
		"no roles":       `{"roles":[]}`,
		"unknown field":  `{"roles":["USER"],"password":"x"}`,
		"duplicate key":  `{"roles":["USER"],"roles":["ADMIN"]}`,
		"case-variant":   `{"Roles":["ADMIN"]}`,
		"not json":       `roles=ADMIN`,
		"disabled typed": `{"disabled":"yes"}`,
	} {
		t.Run("refused: "+name, func(t *testing.T) {
			resp, out := e.call(t, http.MethodPatch, "/api/v1/auth/accounts/"+id, admin, body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%d %s", resp.StatusCode, out)
			}
		})
	}
	if resp, _ := e.call(t, http.MethodPatch, "/api/v1/auth/accounts/00000000-0000-4000-8000-000000000000", admin, `{"disabled":true}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("PATCH unknown account: %d", resp.StatusCode)
	}
}

// assertRevokedAtTheEdge: the access token is refused by the gateway (401,
// invalid_token, one token.rejected/revoked) and the refresh token, if
// any, no longer works.
func (e *env) assertRevokedAtTheEdge(t *testing.T, tok map[string]any) {
	t.Helper()
	at := tok["access_token"].(string)
	var resp *http.Response
	var body []byte
	before := e.secEvents(t, stack.Gateway, "token.rejected", "revoked")
	waitFor(t, 2*time.Second, "the gateway to refuse the revoked token", func() bool {
		resp, body = e.call(t, http.MethodGet, "/api/v1/auth/accounts", at, nil)
		return resp.StatusCode == http.StatusUnauthorized
	})
	if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q (%s)", got, body)
	}
	if after := e.secEvents(t, stack.Gateway, "token.rejected", "revoked"); after-before != 1 {
		t.Errorf("gateway token.rejected/revoked: %v → %v, want exactly one more", before, after)
	}
	if rt, _ := tok["refresh_token"].(string); rt != "" {
		st, errc, _ := e.postToken(t, e.public, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"rampart-demo"}}, [2]string{})
		if st != http.StatusBadRequest || errc != "invalid_grant" {
			t.Errorf("refresh after revocation: %d %s", st, errc)
		}
	}
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestAdminDisableRevokesAndEnableRestoresLogin: disabling revokes the
// account's tokens, refuses its logins (auth.login.failed/disabled) and
// publishes account.changed and account.disabled; enabling publishes
// account.changed (enabled) and lets it sign in again.
func TestAdminDisableRevokesAndEnableRestoresLogin(t *testing.T) {
	e := start(t)
	admin := e.userTokens(t, e.Credentials.Accounts["admin"], "openid admin")["access_token"].(string)
	user := e.Credentials.Accounts["user"]
	old := e.userTokens(t, user, "openid offline_access users:read")
	id := accountID(t, old)
	events := e.domainEvents(t, "account.>")
	dis0 := e.secEvents(t, stack.Auth, "account.changed", "disabled")

	resp, body := e.call(t, http.MethodPatch, "/api/v1/auth/accounts/"+id, admin, map[string]any{"disabled": true})
	var a accountJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil || !a.Disabled {
		t.Fatalf("disable: %d %s", resp.StatusCode, body)
	}
	if d := e.secEvents(t, stack.Auth, "account.changed", "disabled") - dis0; d != 1 {
		t.Errorf("account.changed/disabled events: %v", d)
	}
	for _, want := range []string{"account.changed", "account.disabled"} {
		ev := events.find(want+" for "+id, func(ev natsx.Event) bool { return ev.Subject == id && ev.Type != "account.created" })
		if d := dataOf(t, ev); ev.Type != want || d["change"] != "disabled" || d["disabled"] != true {
			t.Errorf("event %s data %v, want %s", ev.Type, d, want)
		}
	}
	if more := events.rest(300 * time.Millisecond); len(more) != 0 {
		t.Errorf("disabling published more account events: %+v", more)
	}

	e.assertRevokedAtTheEdge(t, old)

	failed0 := e.secEvents(t, stack.Auth, "auth.login.failed", "disabled")
	b := e.browser(t)
	if st := e.login(t, b, e.authURL(t, oauth2.GenerateVerifier(), "s", callback, nil), user.Email, user.Password).StatusCode; st != http.StatusUnauthorized {
		t.Fatalf("login while disabled → %d", st)
	}
	if d := e.secEvents(t, stack.Auth, "auth.login.failed", "disabled") - failed0; d != 1 {
		t.Errorf("auth.login.failed/disabled events: %v", d)
	}

	en0 := e.secEvents(t, stack.Auth, "account.changed", "enabled")
	resp, body = e.call(t, http.MethodPatch, "/api/v1/auth/accounts/"+id, admin, map[string]any{"disabled": false})
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil || a.Disabled {
		t.Fatalf("enable: %d %s", resp.StatusCode, body)
	}
	if d := e.secEvents(t, stack.Auth, "account.changed", "enabled") - en0; d != 1 {
		t.Errorf("account.changed/enabled events: %v", d)
	}
	ev := events.find("account.changed (enabled) for "+id, func(ev natsx.Event) bool { return ev.Subject == id })
	if d := dataOf(t, ev); ev.Type != "account.changed" || d["change"] != "enabled" || d["disabled"] != false {
		t.Errorf("event %s data %v", ev.Type, d)
	}
	fresh := e.userTokens(t, user, "openid users:read")
	if st := e.userinfoStatus(t, fresh["access_token"].(string)); st != http.StatusOK {
		t.Errorf("token after re-enable: userinfo %d", st)
	}
	// The token revoked by the disable stays revoked after the enable.
	if st := e.userinfoStatus(t, old["access_token"].(string)); st != http.StatusUnauthorized {
		t.Errorf("old token after re-enable: userinfo %d", st)
	}
}

// TestAdminRevokeEndsEveryTokenOfTheSubject: POST …/revoke denies every
// access token issued so far and kills every refresh token, with one
// auth.token.revoked/admin; the account itself can sign in again.
func TestAdminRevokeEndsEveryTokenOfTheSubject(t *testing.T) {
	e := start(t)
	admin := e.userTokens(t, e.Credentials.Accounts["admin"], "openid admin")["access_token"].(string)
	user := e.Credentials.Accounts["user"]
	first := e.userTokens(t, user, "openid offline_access")
	second := e.userTokens(t, user, "openid offline_access")
	id := accountID(t, first)
	before := e.secEvents(t, stack.Auth, "auth.token.revoked", "admin")
	revoked := e.streamEvents(t, natsx.StreamSecurity, "rampart.security.auth-service.auth.token.revoked")

	resp, body := e.call(t, http.MethodPost, "/api/v1/auth/accounts/"+id+"/revoke", admin, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if d := e.secEvents(t, stack.Auth, "auth.token.revoked", "admin") - before; d != 1 {
		t.Errorf("auth.token.revoked/admin events: %v", d)
	}
	ev := revoked.find("auth.token.revoked for "+id, func(ev natsx.Event) bool { return dataOf(t, ev)["subject"] == id })
	if d := dataOf(t, ev); d["reason"] != "admin" || d["client_id"] != "rampart-demo" {
		t.Errorf("event data %v", d)
	}
	e.assertRevokedAtTheEdge(t, first)
	e.assertRevokedAtTheEdge(t, second)

	fresh := e.userTokens(t, user, "openid")
	if st := e.userinfoStatus(t, fresh["access_token"].(string)); st != http.StatusOK {
		t.Errorf("a token issued after the revocation: userinfo %d", st)
	}
	if resp, _ := e.call(t, http.MethodPost, "/api/v1/auth/accounts/00000000-0000-4000-8000-000000000000/revoke", admin, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoke unknown account: %d", resp.StatusCode)
	}
}

// TestAdminForcesKeyRotation: after POST /keys/rotate new tokens carry a
// new kid published in the JWKS, and tokens signed with the old key keep
// working.
func TestAdminForcesKeyRotation(t *testing.T) {
	e := start(t)
	adminAcct := e.Credentials.Accounts["admin"]
	admin := e.userTokens(t, adminAcct, "openid admin")["access_token"].(string)
	kids := func() []string {
		_, body := get(t, e.public, e.Endpoints.Gateway+"/.well-known/jwks.json", nil)
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.Kid)
		}
		return out
	}
	kidOf := func(raw string) string {
		h, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
		var m map[string]any
		_ = json.Unmarshal(h, &m)
		s, _ := m["kid"].(string)
		return s
	}
	oldKid := kidOf(admin)
	resp, body := e.call(t, http.MethodPost, "/api/v1/auth/keys/rotate", admin, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("rotate: %d %s", resp.StatusCode, body)
	}
	fresh := e.userTokens(t, adminAcct, "openid admin")["access_token"].(string)
	newKid := kidOf(fresh)
	if newKid == oldKid || !slices.Contains(kids(), newKid) || !slices.Contains(kids(), oldKid) {
		t.Fatalf("kids %v, old %s, new %s", kids(), oldKid, newKid)
	}
	for name, tok := range map[string]string{"old key": admin, "new key": fresh} {
		if resp, body := e.call(t, http.MethodGet, "/api/v1/auth/accounts?limit=1", tok, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("token signed with the %s: %d %s", name, resp.StatusCode, body)
		}
	}
}
