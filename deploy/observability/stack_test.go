package observability

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rampart-go/rampart/deploy/stack"
)

// TestEveryReferencedMetricIsExported starts the in-process stack, drives a
// scenario through the gateway (a successful request, a token issued to the
// machine client, rejected tokens, failed logins up to a lockout, a
// rate-limited request, an mTLS refusal), scrapes every service's ops
// listener and checks that each metric a dashboard or rule names is
// exported.
func TestEveryReferencedMetricIsExported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack: skipped with -short")
	}
	refs, recorded := referencedMetrics(t)

	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, stack.Options{Dir: t.TempDir(), Ephemeral: true, LogWriter: io.Discard})
	if err != nil {
		cancel()
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	exercise(t, s)

	exported := map[string]bool{}
	var events []string
	issued := 0.0
	for _, svc := range stack.Services {
		for name, mf := range scrape(t, s.Endpoints.Services[svc].Ops+"/metrics") {
			if name == "rampart_auth_tokens_issued_total" {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "grant" && l.GetValue() == "client_credentials" {
							issued += m.GetCounter().GetValue()
						}
					}
				}
			}
			switch mf.GetType().String() {
			case "HISTOGRAM":
				exported[name+"_bucket"], exported[name+"_sum"], exported[name+"_count"] = true, true, true
			case "SUMMARY":
				exported[name+"_sum"], exported[name+"_count"], exported[name] = true, true, true
			default:
				exported[name] = true
			}
			if name == "rampart_security_events_total" {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "type" {
							events = append(events, svc+" "+l.GetValue())
						}
					}
				}
			}
		}
	}
	for _, want := range []string{"gateway token.rejected", "gateway ratelimit.exceeded",
		"auth-service auth.login.failed", "auth-service auth.account.locked"} {
		if !contains(events, want) {
			t.Errorf("scenario did not produce %s (have %v)", want, events)
		}
	}
	if issued < 1 {
		t.Errorf("the scenario's client_credentials token is not counted: rampart_auth_tokens_issued_total{grant=\"client_credentials\"} = %v", issued)
	}
	for _, name := range keys(refs) {
		if !exported[name] && !recorded[name] && !syntheticSeries[name] {
			t.Errorf("%s (used by %s) is exported by no service", name, refs[name])
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func scrape(t testing.TB, u string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("scrape %s: %v", u, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", u, err)
	}
	return mfs
}

// exercise drives the scenario every dashboard panel and alert needs data
// from.
func exercise(t testing.TB, s *stack.Stack) {
	t.Helper()
	pub, err := s.HTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	gw := s.Endpoints.Gateway
	status := func(c *http.Client, method, u string, hdr http.Header, body url.Values) (int, []byte, *http.Response) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, err := http.NewRequest(method, u, rd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp
	}

	// A successful request through the gateway to order-service.
	if st, _, _ := status(pub, http.MethodGet, gw+"/api/v1/catalog", nil, nil); st != http.StatusOK {
		t.Fatalf("catalog → %d", st)
	}
	// A token issued: the machine client's client_credentials grant.
	var machineSecret string
	for _, c := range s.Credentials.Clients {
		if c.ClientID == "rampart-machine" {
			machineSecret = c.ClientSecret
		}
	}
	basic := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("rampart-machine:"+machineSecret))}}
	if st, b, _ := status(pub, http.MethodPost, gw+"/oauth2/token", basic, url.Values{"grant_type": {"client_credentials"}}); st != http.StatusOK {
		t.Fatalf("client_credentials → %d %s", st, b)
	}
	// Rejected tokens: none, and a malformed one.
	for _, h := range []http.Header{nil, {"Authorization": {"Bearer not.a.token"}}} {
		if st, _, _ := status(pub, http.MethodGet, gw+"/api/v1/users/me", h, nil); st != http.StatusUnauthorized {
			t.Fatalf("users/me with %v → %d", h, st)
		}
	}
	// Five wrong passwords lock the demo user.
	user := s.Credentials.Accounts["user"]
	for range 5 {
		jar, _ := cookiejar.New(nil)
		b := &http.Client{Transport: pub.Transport, Jar: jar, Timeout: 20 * time.Second,
			CheckRedirect: func(req *http.Request, _ []*http.Request) error {
				if req.URL.Scheme == "http" {
					return http.ErrUseLastResponse
				}
				return nil
			}}
		st, page, resp := status(b, http.MethodGet, authorizeURL(t, gw), nil, nil)
		if st != http.StatusOK {
			t.Fatalf("authorize → %d", st)
		}
		action, form := loginForm(t, page)
		form.Set("email", user.Email)
		form.Set("password", "not the password at all")
		target := resp.Request.URL.ResolveReference(&url.URL{Path: action})
		if st, _, _ := status(b, http.MethodPost, target.String(), nil, form); st != http.StatusUnauthorized {
			t.Fatalf("wrong password → %d", st)
		}
	}
	// The login limit (per address, 10 a minute by default) refuses.
	limited := false
	for range 30 {
		if st, _, _ := status(pub, http.MethodGet, gw+"/login", nil, nil); st == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 from /login after 30 requests")
	}
	// An mTLS refusal: a client without a certificate at a service.
	if resp, err := pub.Get(s.Endpoints.Services[stack.Auth].API + "/healthz"); err == nil {
		_ = resp.Body.Close()
	}
}

func authorizeURL(t testing.TB, gw string) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	verifier := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {"rampart-demo"}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
		"scope": {"openid"}, "state": {"observability"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	return gw + "/oauth2/authorize?" + q.Encode()
}

var (
	formAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	formInput  = regexp.MustCompile(`<input[^>]*>`)
	inputName  = regexp.MustCompile(`name="([^"]*)"`)
	inputValue = regexp.MustCompile(`value="([^"]*)"`)
)

// loginForm returns the login form's action and its named inputs.
func loginForm(t testing.TB, page []byte) (string, url.Values) {
	t.Helper()
	m := formAction.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no form in login page:\n%s", page)
	}
	vals := url.Values{}
	for _, in := range formInput.FindAll(page, -1) {
		n := inputName.FindSubmatch(in)
		if n == nil {
			continue
		}
		v := ""
		if x := inputValue.FindSubmatch(in); x != nil {
			v = htmlUnescape(string(x[1]))
		}
		vals.Set(string(n[1]), v)
	}
	return htmlUnescape(string(m[1])), vals
}

var htmlUnescape = strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">", "&#x2F;", "/", "&#61;", "=").Replace
