package oauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/secevent"
)

// TestMalformedBasicCredentialsAreRefused: a client_secret_basic id or
// secret that is not valid text (a NUL, invalid UTF-8, once form-decoded)
// is malformed credentials: 401 invalid_client and one
// auth.client.failed/bad_secret, never a database error. PostgreSQL
// refuses such a string as a query parameter, which made it a 500.
func TestMalformedBasicCredentialsAreRefused(t *testing.T) {
	dbxtest.Each(t, testMalformedBasicCredentialsAreRefused)
}

func testMalformedBasicCredentialsAreRefused(t *testing.T, dbURL string) {
	f := newExchangeFixtureOn(t, dbURL)
	for name, cred := range map[string]string{
		"encoded NUL in the id":      "a%00b:secret",
		"invalid UTF-8 in the id":    "%ff%fe:secret",
		"raw NUL in the id":          "x\x00:secret",
		"control byte in the secret": MachineClientID + ":s%07",
		"overlong id":                strings.Repeat("a", maxParamBytes+1) + ":secret",
	} {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/oauth2/token",
				strings.NewReader(url.Values{"grant_type": {GrantClientCredentials}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
			rec := httptest.NewRecorder()
			f.engine.ServeHTTP(rec, req)
			var out map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &out)
			if rec.Code != http.StatusUnauthorized || out["error"] != "invalid_client" {
				t.Fatalf("%d %s, want 401 invalid_client", rec.Code, rec.Body)
			}
			onlyEvent(t, f.events.Take(), secevent.ClientFailed, secevent.ReasonBadSecret)
		})
	}
}

// TestClientAuthenticationWithoutAClientID: a token request naming no
// client at all is invalid_client like any failed authentication, and is
// recorded like one: one auth.client.failed/unknown_client.
func TestClientAuthenticationWithoutAClientID(t *testing.T) {
	f := newExchangeFixture(t)
	st, out := f.token(t, url.Values{"grant_type": {GrantClientCredentials}}, false)
	if st != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Fatalf("%d %v, want 401 invalid_client", st, out)
	}
	onlyEvent(t, f.events.Take(), secevent.ClientFailed, secevent.ReasonUnknownClient)
}

// TestRepeatedAuthorizationHeaderIsRefused: two Authorization headers are
// two sets of credentials, and which one counts would be up to each
// parser on the way (RFC 9110 §5.3 allows no list here): the request is
// malformed, as a repeated form parameter is, whichever header is valid.
func TestRepeatedAuthorizationHeaderIsRefused(t *testing.T) {
	f := newExchangeFixture(t)
	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
	}
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {GrantClientCredentials}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Add("Authorization", basic(DemoClientID, ""))
	req.Header.Add("Authorization", basic("order-service", ""))
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	if rec.Code != http.StatusBadRequest || out["error"] != "invalid_request" {
		t.Fatalf("%d %s, want 400 invalid_request", rec.Code, rec.Body)
	}
}
