package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/rampart-go/rampart/deploy/stack"
)

// allScopes is what the demo client asks for on behalf of the test users;
// each token carries only what the user's roles allow.
const allScopes = "openid offline_access users:read users:write orders:read orders:write"

// person is a signed-in test user.
type person struct {
	name, id, token string
}

// signInAs runs the code flow for an account and returns its access token.
func (e *env) signInAs(t testing.TB, email, password, scope string) string {
	t.Helper()
	b := e.browser(t)
	verifier, state := oauth2.GenerateVerifier(), randomString(t)
	resp := e.login(t, b, e.authURL(t, verifier, state, callback, url.Values{"scope": {scope}}), email, password)
	st, _, tok := e.redeem(t, e.codeFrom(t, resp, state), verifier)
	if st != http.StatusOK {
		t.Fatalf("redeem for %s: %d %v", email, st, tok)
	}
	return tok["access_token"].(string)
}

// subjectOf reads sub from a token we just received (no verification
// needed: the stack issued it).
func subjectOf(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.Sub
}

// registerUser creates a fresh USER through the public registration route.
func (e *env) registerUser(t testing.TB, name string) (email, password string) {
	t.Helper()
	email = strings.ToLower(name) + "-" + uuid.NewString()[:8] + "@rampart.test"
	password = "correct horse " + uuid.NewString()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password, "display_name": name})
	st, resp := e.do(t, e.public, http.MethodPost, "/api/v1/auth/register", "", body, nil)
	if st != http.StatusCreated {
		t.Fatalf("register %s: %d %s", email, st, resp)
	}
	return email, password
}

// call sends one request through the gateway (or to base if path is a
// full URL) and returns status and body.
func (e *env) do(t testing.TB, c *http.Client, method, path, token string, body []byte, hdr http.Header) (int, []byte) {
	t.Helper()
	target := path
	if !strings.HasPrefix(path, "https://") {
		target = e.Endpoints.Gateway + path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// cast signs in the seeded admin and manager and two fresh users, and
// waits until user-service has made every profile from account.created.
func (e *env) cast(t testing.TB) (admin, manager, alice, bob person) {
	t.Helper()
	creds := e.Credentials.Accounts
	admin = person{name: "admin", token: e.signInAs(t, creds["admin"].Email, creds["admin"].Password, allScopes+" admin")}
	manager = person{name: "manager", token: e.signInAs(t, creds["manager"].Email, creds["manager"].Password, allScopes)}
	ae, ap := e.registerUser(t, "Alice")
	be, bp := e.registerUser(t, "Bob")
	alice = person{name: "alice", token: e.signInAs(t, ae, ap, allScopes)}
	bob = person{name: "bob", token: e.signInAs(t, be, bp, allScopes)}
	for _, p := range []*person{&admin, &manager, &alice, &bob} {
		p.id = subjectOf(t, p.token)
		waitFor(t, 10*time.Second, p.name+"'s profile", func() bool {
			st, _ := e.do(t, e.public, http.MethodGet, "/api/v1/users/me", p.token, nil, nil)
			return st == http.StatusOK
		})
	}
	return admin, manager, alice, bob
}

// TestUserBOLAMatrix is every user route × every role × own/other object,
// through the gateway, with the status and the security event each must
// produce.
func TestUserBOLAMatrix(t *testing.T) {
	e := start(t)
	admin, manager, alice, bob := e.cast(t)
	noScopes := e.signInAs(t, e.Credentials.Accounts["user"].Email, e.Credentials.Accounts["user"].Password, "openid")

	type row struct {
		who    person
		method string
		path   string
		want   int
		denied string // access.denied reason expected, "" for none
	}
	rows := []row{
		{alice, "GET", "/api/v1/users/me", 200, ""},
		{alice, "GET", "/api/v1/users/" + alice.id, 200, ""},
		{alice, "GET", "/api/v1/users/" + bob.id, 404, "ownership"},
		{alice, "GET", "/api/v1/users/" + uuid.NewString(), 404, "ownership"}, // unknown looks the same
		{alice, "GET", "/api/v1/users/" + admin.id, 404, "ownership"},
		{alice, "GET", "/api/v1/users", 403, "role"},
		{alice, "DELETE", "/api/v1/users/" + bob.id, 404, "ownership"},
		{manager, "GET", "/api/v1/users/" + bob.id, 200, ""},
		{manager, "GET", "/api/v1/users", 200, ""},
		{manager, "DELETE", "/api/v1/users/" + bob.id, 403, "role"},
		{admin, "GET", "/api/v1/users/" + bob.id, 200, ""},
		{admin, "GET", "/api/v1/users", 200, ""},
		{admin, "GET", "/api/v1/users/" + uuid.NewString(), 404, ""},
		{admin, "DELETE", "/api/v1/users/" + uuid.NewString(), 404, ""},
		{person{name: "no scopes", token: noScopes}, "GET", "/api/v1/users/me", 403, "scope"},
		{person{name: "no scopes", token: noScopes}, "PATCH", "/api/v1/users/me", 403, "scope"},
		{alice, "GET", "/api/v1/users/not-a-uuid", 404, ""},
		{alice, "GET", "/api/v1/users/" + strings.ToUpper(bob.id), 404, ""},
	}
	reasons := []string{"ownership", "role", "scope"}
	for _, r := range rows {
		t.Run(r.who.name+" "+r.method+" "+strings.Replace(r.path, r.who.id, "{own}", 1), func(t *testing.T) {
			before := e.deniedCounts(t, stack.User, reasons)
			st, body := e.do(t, e.public, r.method, r.path, r.who.token, nil, nil)
			if st != r.want {
				t.Fatalf("status %d, want %d: %s", st, r.want, body)
			}
			after := e.deniedCounts(t, stack.User, reasons)
			for _, reason := range reasons {
				want := 0.0
				if reason == r.denied {
					want = 1
				}
				if got := after[reason] - before[reason]; got != want {
					t.Errorf("access.denied/%s grew by %v, want %v", reason, got, want)
				}
			}
			if st >= 400 && !strings.Contains(string(body), `"status"`) {
				t.Errorf("refusal is not problem+json: %s", body)
			}
		})
	}
}

// deniedCounts reads svc's access.denied counters for each reason.
func (e *env) deniedCounts(t testing.TB, svc string, reasons []string) map[string]float64 {
	t.Helper()
	out := make(map[string]float64, len(reasons))
	for _, r := range reasons {
		out[r] = e.metric(t, svc, "rampart_security_events_total", secEventLabels(r, svc, "access.denied"))
	}
	return out
}

// TestProfileMassAssignmentAndValidation: only display_name, phone and
// address can change; every other field, spelling or shape is a 400 and
// the profile is untouched.
func TestProfileMassAssignmentAndValidation(t *testing.T) {
	e := start(t)
	_, _, alice, bob := e.cast(t)
	_, before := e.do(t, e.public, "GET", "/api/v1/users/me", alice.token, nil, nil)

	for _, body := range []string{
		`{"id":"` + bob.id + `"}`,
		`{"email":"evil@example.com"}`,
		`{"roles":["ADMIN"]}`,
		`{"display_name":"Eve","roles":["ADMIN"]}`,
		`{"display_name":"Eve","email":"evil@example.com"}`,
		`{"Display_Name":"Eve"}`,
		`{"DISPLAY_NAME":"Eve"}`,
		`{"display_name":"Eve","display_name":"Mallory"}`,
		`{"display_name":"Eve"} {"roles":["ADMIN"]}`,
		`{"display_name":["Eve"]}`,
		`{"display_name":"Eve","created_at":"2000-01-01T00:00:00Z"}`,
		`{}`,
		`{"display_name":""}`,
		`{"phone":"call me"}`,
		`{"address":"` + strings.Repeat("x", 501) + `"}`,
		`[]`,
		`not json`,
	} {
		st, resp := e.do(t, e.public, "PATCH", "/api/v1/users/me", alice.token, []byte(body), nil)
		if st != http.StatusBadRequest {
			t.Errorf("PATCH %s: %d %s, want 400", body, st, resp)
		}
	}
	_, after := e.do(t, e.public, "GET", "/api/v1/users/me", alice.token, nil, nil)
	if !bytes.Equal(before, after) {
		t.Fatalf("refused patches changed the profile:\n%s\n%s", before, after)
	}

	st, resp := e.do(t, e.public, "PATCH", "/api/v1/users/me", alice.token,
		[]byte(`{"display_name":"Alice L.","phone":"+49 30 1234567","address":"1 Main St\n10115 Berlin"}`), nil)
	if st != http.StatusOK {
		t.Fatalf("valid patch: %d %s", st, resp)
	}
	var p map[string]any
	_ = json.Unmarshal(resp, &p)
	if p["display_name"] != "Alice L." || p["phone"] != "+49 30 1234567" || p["id"] != alice.id {
		t.Fatalf("patched profile %v", p)
	}
}

// TestProfileListPagination: bounded pages, opaque cursors, garbage refused.
func TestProfileListPagination(t *testing.T) {
	e := start(t)
	admin, _, _, _ := e.cast(t)
	seen := map[string]bool{}
	next, pages := "", 0
	for {
		path := "/api/v1/users?limit=1"
		if next != "" {
			path += "&cursor=" + url.QueryEscape(next)
		}
		st, resp := e.do(t, e.public, "GET", path, admin.token, nil, nil)
		if st != http.StatusOK {
			t.Fatalf("%s: %d %s", path, st, resp)
		}
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(resp, &page); err != nil || len(page.Items) > 1 {
			t.Fatalf("page %s (%v)", resp, err)
		}
		for _, it := range page.Items {
			if seen[it.ID] {
				t.Fatalf("%s returned twice", it.ID)
			}
			seen[it.ID] = true
		}
		pages++
		if page.NextCursor == nil {
			break
		}
		next = *page.NextCursor
	}
	// admin, manager, user (seeded) and the two registered users.
	if len(seen) < 5 || pages != len(seen) {
		t.Fatalf("%d profiles in %d pages", len(seen), pages)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=-1", "limit=abc", "cursor=abc", "cursor=" + url.QueryEscape(base64.RawURLEncoding.EncodeToString([]byte("p1:' OR 1=1 --")))} {
		st, resp := e.do(t, e.public, "GET", "/api/v1/users?"+q, admin.token, nil, nil)
		if st != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, st, resp)
		}
	}
	st, resp := e.do(t, e.public, "GET", "/api/v1/users?limit=100", admin.token, nil, nil)
	if st != http.StatusOK {
		t.Fatalf("limit=100: %d %s", st, resp)
	}
}

// TestInternalProfileRoute: only order-service's certificate, with a token
// minted for user-service, carrying users:read and bound to that very
// certificate, reads a profile; and when it acts for a user, only the
// profiles that user may see.
func TestInternalProfileRoute(t *testing.T) {
	e := start(t)
	_, _, alice, bob := e.cast(t)
	authAPI := e.Endpoints.Services[stack.Auth].API
	internal := func(id string) string { return e.Endpoints.Services[stack.User].API + "/internal/v1/users/" + id }

	orderA := e.clientWithCert(t, e.CA, stack.Order)
	orderB := e.clientWithCert(t, e.CA, stack.Order) // same identity, another key
	gateway := e.clientWithCert(t, e.CA, stack.Gateway)

	serviceToken := func(c *http.Client, scope string) string {
		t.Helper()
		st, code, tok := e.postTokenAt(t, c, authAPI, url.Values{
			"grant_type": {"client_credentials"}, "client_id": {stack.Order},
			"audience": {stack.User}, "scope": {scope},
		}, [2]string{})
		if st != http.StatusOK {
			t.Fatalf("client_credentials (%s): %d %s %v", scope, st, code, tok)
		}
		return tok["access_token"].(string)
	}
	exchange := func(c *http.Client, userToken string) string {
		t.Helper()
		st, code, tok := e.postTokenAt(t, c, authAPI, url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "client_id": {stack.Order},
			"subject_token": {userToken}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			"audience": {stack.User}, "scope": {"users:read"},
		}, [2]string{})
		if st != http.StatusOK {
			t.Fatalf("token exchange: %d %s %v", st, code, tok)
		}
		return tok["access_token"].(string)
	}
	own := serviceToken(orderA, "users:read")
	noRead := serviceToken(orderA, "orders:read")
	forAlice := exchange(orderA, alice.token)

	type row struct {
		name   string
		client *http.Client
		token  string
		id     string
		want   int
		event  string // type/reason at user-service
	}
	rows := []row{
		{"order-service for itself", orderA, own, bob.id, 200, ""},
		{"order-service for alice, her profile", orderA, forAlice, alice.id, 200, ""},
		{"order-service for alice, bob's profile", orderA, forAlice, bob.id, 404, "access.denied/ownership"},
		{"the gateway's identity", gateway, own, bob.id, 403, "mtls.rejected/identity_not_allowed"},
		{"a token without users:read", orderA, noRead, bob.id, 403, "access.denied/scope"},
		{"a token bound to another certificate", orderB, own, bob.id, 401, "token.rejected/binding"},
		{"an exchanged token on another certificate", orderB, forAlice, alice.id, 401, "token.rejected/binding"},
		{"a public API token (wrong audience)", orderA, alice.token, alice.id, 401, "token.rejected/audience"},
		{"no token", orderA, "", bob.id, 401, "token.rejected/missing"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			var typ, reason string
			var before float64
			if r.event != "" {
				typ, reason, _ = strings.Cut(r.event, "/")
				before = e.metric(t, stack.User, "rampart_security_events_total", secEventLabels(reason, stack.User, typ))
			}
			st, body := e.do(t, r.client, "GET", internal(r.id), r.token, nil, nil)
			if st != r.want {
				t.Fatalf("status %d, want %d: %s", st, r.want, body)
			}
			if r.event != "" {
				after := e.metric(t, stack.User, "rampart_security_events_total", secEventLabels(reason, stack.User, typ))
				if after != before+1 {
					t.Errorf("%s went %v -> %v, want +1", r.event, before, after)
				}
			}
			if st == 200 && !strings.Contains(string(body), `"address"`) {
				t.Errorf("profile body %s", body)
			}
		})
	}
}

// TestErasureSagaCompletesWithAServiceDown: alice erases herself while
// auth-service is down. The profile goes at once; when auth-service
// returns it catches up from the stream, disables the account and revokes
// her tokens, which the gateway then refuses.
func TestErasureSagaCompletesWithAServiceDown(t *testing.T) {
	e := start(t)
	admin, _, alice, bob := e.cast(t)
	revoked := e.securityEvents(t, "rampart.security.auth-service.auth.token.revoked")

	if err := e.StopService(stack.Auth); err != nil {
		t.Fatal(err)
	}
	st, body := e.do(t, e.public, "DELETE", "/api/v1/users/"+alice.id, alice.token, nil, nil)
	if st != http.StatusNoContent {
		t.Fatalf("self-erasure: %d %s", st, body)
	}
	if st, _ := e.do(t, e.public, "GET", "/api/v1/users/"+alice.id, admin.token, nil, nil); st != http.StatusNotFound {
		t.Fatalf("admin still sees the erased profile: %d", st)
	}
	// An admin erases bob too: a second, independent saga.
	if st, body := e.do(t, e.public, "DELETE", "/api/v1/users/"+bob.id, admin.token, nil, nil); st != http.StatusNoContent {
		t.Fatalf("admin erasure: %d %s", st, body)
	}

	if err := e.StartService(t.Context(), stack.Auth); err != nil {
		t.Fatal(err)
	}
	for _, p := range []person{alice, bob} {
		waitFor(t, 20*time.Second, p.name+"'s token refused at the edge", func() bool {
			st, _ := e.do(t, e.public, "GET", "/api/v1/users/me", p.token, nil, nil)
			return st == http.StatusUnauthorized
		})
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		ev, _ := revoked()
		var data map[string]any
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data["reason"] != "erasure" {
			continue
		}
		sub, _ := data["subject"].(string)
		if seen[sub] {
			t.Fatalf("two erasure revocations for %s", sub)
		}
		seen[sub] = true
	}
	if !seen[alice.id] || !seen[bob.id] {
		t.Fatalf("erasure revocations for %v", seen)
	}
	// The account is gone for sign-in purposes too.
	if st, _ := e.do(t, e.public, "DELETE", "/api/v1/users/"+alice.id, alice.token, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("erased user's token still works: %d", st)
	}
}
