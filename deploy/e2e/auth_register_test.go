package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authapp "github.com/rampart-go/rampart/auth-service/app"
	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/natsx"
)

// register posts a registration through the gateway.
func (e *env) register(t testing.TB, email, password, name string) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password, "display_name": name})
	resp, out := e.call(t, http.MethodPost, "/api/v1/auth/register", "", string(body))
	return resp.StatusCode, out
}

// problemJSON is an RFC 9457 body with our field errors.
type problemJSON struct {
	Status    int    `json:"status"`
	Title     string `json:"title"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
	Errors    []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// TestRegisterPublishesAccountCreatedOnce: a registration through the
// gateway is a 201 with the account (role USER, no password material),
// one account.changed/created security event, and exactly one
// account.created CloudEvent on RAMPART_EVENTS carrying what user-service
// needs (id = the token's sub, email, display_name, roles, created_at).
// Invalid registrations are 400 naming each field, a taken email is 409,
// and none of them publishes anything.
func TestRegisterPublishesAccountCreatedOnce(t *testing.T) {
	e := start(t)
	created := e.domainEvents(t, "account.created")
	secCreated := func() float64 { return e.secEvents(t, stack.Auth, "account.changed", "created") }
	suffix := strings.ToLower(randomString(t)[:8])
	email := "newcomer-" + suffix + "@rampart.test"
	const pw = "a perfectly fine passphrase"

	refused := []struct {
		name, body string
		status     int
		fields     []string
	}{
		{"short password", `{"email":"short-` + suffix + `@rampart.test","password":"tooshort1","display_name":"Short"}`, 400, []string{"password"}},
		{"common password", `{"email":"common-` + suffix + `@rampart.test","password":"password1234","display_name":"Common"}`, 400, []string{"password"}},
		{"common password padded", `{"email":"padded-` + suffix + `@rampart.test","password":"Password2024!","display_name":"Padded"}`, 400, []string{"password"}},
		{"bad email", `{"email":"not-an-email","password":"` + pw + `","display_name":"Bad"}`, 400, []string{"email"}},
		{"email with a display name", `{"email":"Eve <eve-` + suffix + `@rampart.test>","password":"` + pw + `","display_name":"Eve"}`, 400, []string{"email"}},
		{"no display name", `{"email":"noname-` + suffix + `@rampart.test","password":"` + pw + `","display_name":""}`, 400, []string{"display_name"}},
		{"everything wrong", `{"email":"x","password":"x","display_name":""}`, 400, []string{"email", "display_name", "password"}},
		{"unknown field (role escalation attempt)", `{"email":"roles-` + suffix + `@rampart.test","password":"` + pw + `","display_name":"R","roles":["ADMIN"]}`, 400, nil},
		{"duplicate key", `{"email":"dup-` + suffix + `@rampart.test","email":"dup2-` + suffix + `@rampart.test","password":"` + pw + `","display_name":"D"}`, 400, nil},
		{"not JSON", `email=x`, 400, nil},
		{"seeded account's email", `{"email":"` + e.Credentials.Accounts["user"].Email + `","password":"` + pw + `","display_name":"Dup"}`, 409, nil},
	}
	sec0 := secCreated()
	for _, r := range refused {
		t.Run("refused: "+r.name, func(t *testing.T) {
			resp, body := e.call(t, http.MethodPost, "/api/v1/auth/register", "", r.body)
			if resp.StatusCode != r.status || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			var p problemJSON
			if err := json.Unmarshal(body, &p); err != nil || p.Status != r.status || p.Detail == "" || p.RequestID == "" {
				t.Errorf("problem body %s (%v)", body, err)
			}
			var fields []string
			for _, f := range p.Errors {
				fields = append(fields, f.Field)
				if f.Message == "" {
					t.Errorf("field %s has no message", f.Field)
				}
			}
			if r.fields != nil && !slices.Equal(fields, r.fields) {
				t.Errorf("fields %v, want %v (%s)", fields, r.fields, body)
			}
			if strings.Contains(string(body), pw) {
				t.Error("the error echoes the password")
			}
		})
	}
	if d := secCreated() - sec0; d != 0 {
		t.Errorf("refused registrations emitted %v account.changed/created events", d)
	}

	// The one that succeeds: the email is normalised.
	resp, body := e.call(t, http.MethodPost, "/api/v1/auth/register", "",
		`{"email":"  NewComer-`+suffix+`@Rampart.test ","password":"`+pw+`","display_name":"  New Comer "}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	var a accountJSON
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if a.Email != email || a.DisplayName != "New Comer" || !slices.Equal(a.Roles, []string{"USER"}) || a.Disabled || a.ID == "" {
		t.Errorf("account %s", body)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/auth/accounts/"+a.ID {
		t.Errorf("Location %q", loc)
	}
	if strings.Contains(string(body), "password") || strings.Contains(string(body), "argon2") {
		t.Errorf("response leaks password material: %s", body)
	}
	if d := secCreated() - sec0; d != 1 {
		t.Errorf("account.changed/created events: %v, want 1", d)
	}
	if st, body := e.register(t, strings.ToUpper(email), pw, "Again"); st != http.StatusConflict {
		t.Errorf("same email in capitals: %d %s", st, body)
	}

	// Every account.created on the stream: the seeded three, ours once.
	var mine []natsx.Event
	seen := map[string]int{}
	first := created.find("account.created for "+a.ID, func(ev natsx.Event) bool {
		seen[strings.ToLower(dataOf(t, ev)["email"].(string))]++
		return ev.Subject == a.ID
	})
	mine = append(mine, first)
	for _, ev := range created.rest(500 * time.Millisecond) {
		seen[strings.ToLower(dataOf(t, ev)["email"].(string))]++
		if ev.Subject == a.ID {
			mine = append(mine, ev)
		}
	}
	if len(mine) != 1 || seen[email] != 1 {
		t.Fatalf("account.created for the new account published %d times (%v)", len(mine), seen)
	}
	for k, acct := range e.Credentials.Accounts {
		if seen[strings.ToLower(acct.Email)] != 1 {
			t.Errorf("seeded %s: %d account.created events", k, seen[strings.ToLower(acct.Email)])
		}
	}
	if len(seen) != len(e.Credentials.Accounts)+1 {
		t.Errorf("account.created for emails %v: refused registrations published events", seen)
	}

	ev := first
	if ev.SpecVersion != "1.0" || ev.Type != "account.created" || ev.Source != stack.Auth || ev.ID == "" ||
		ev.Time.IsZero() || ev.DataContentType != "application/json" || ev.Subject != a.ID {
		t.Errorf("envelope %+v", ev)
	}
	if ev.TraceParent == "" {
		t.Error("account.created carries no traceparent")
	}
	d := dataOf(t, ev)
	if d["id"] != a.ID || d["email"] != email || d["display_name"] != "New Comer" ||
		!slices.Equal(anyStrings(d["roles"]), []string{"USER"}) || d["created_at"] == nil {
		t.Errorf("account.created data %v", d)
	}
	if strings.Contains(string(ev.Data), pw) || strings.Contains(string(ev.Data), "argon2") || strings.Contains(string(ev.Data), "password") {
		t.Errorf("account.created carries password material: %s", ev.Data)
	}

	// One user id everywhere: the event's id is the sub of the account's
	// tokens.
	tok := e.userTokens(t, authapp.CredentialAccount{Email: email, Password: pw}, "openid")
	if sub := accountID(t, tok); sub != a.ID {
		t.Errorf("token sub %s, account id %s", sub, a.ID)
	}
}
