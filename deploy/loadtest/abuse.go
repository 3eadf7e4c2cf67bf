package loadtest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// abuseScenario mixes attackers with real users. Real users run the
// realistic mix alone for the first half (baseline) and alongside the
// attackers for the second; their p95 under attack must stay within 20 %
// of the baseline measured in the same run. Attackers, each from its own
// 127.2.x.y address:
//   - credential stuffing through the real login form;
//   - forged access tokens: alg none, a key we made with the real kid,
//     an expired token, HS256 (algorithm confusion);
//   - BOLA: a signed-in user probing other users' orders and profiles;
//   - rate-limit evasion: an anonymous flood with random X-Forwarded-For,
//     X-Real-IP and Forwarded headers.
//
// The security counters on /metrics must rise by exactly what the
// attackers were answered. Needs the gateway's default rate limits
// (make run): raised limits would let the flood through.
func abuseScenario() Scenario {
	return Scenario{
		Name:     "abuse",
		About:    "attackers mixed with real users: credential stuffing, forged tokens, BOLA probing, X-Forwarded-For rate-limit evasion",
		Defaults: Options{Rate: 100, Duration: 40 * time.Second, Users: 40, MaxInFlight: 200},
		Run:      runAbuse,
		Thresholds: func(o Options) []Threshold {
			ths := []Threshold{
				NoUnexpected401(), ChecksPass(),
				StatusShare("attack/atk_stuff_submit", 1, 401, 429),
				StatusShare("attack/atk_forged", 1, 401, 429),
				StatusShare("attack/atk_bola_order", 1, 404, 429),
				StatusShare("attack/atk_bola_user", 1, 404, 429),
				xffHeld(o.Duration / 2),
				CounterEquals("gateway token.rejected", func(s *Summary) float64 { return float64(statusCount(s, 401, "atk_forged")) }),
				CounterEquals("ratelimit.exceeded (gateway + auth-service)", func(s *Summary) float64 { return float64(statusCount(s, 429, "attack/")) }),
				CounterEquals("auth-service auth.login.failed", func(s *Summary) float64 { return float64(statusCount(s, 401, "atk_stuff_submit")) }),
				CounterEquals("user-service access.denied/ownership", func(s *Summary) float64 { return float64(statusCount(s, 404, "atk_bola_user")) }),
				CounterEquals("order-service access.denied/ownership", func(s *Summary) float64 { return float64(statusCount(s, 404, "atk_bola_order")) }),
			}
			for _, tag := range []string{"catalog", "orders_list", "orders_get", "orders_create", "users_me"} {
				ths = append(ths, ErrorRateBelow("baseline/"+tag, 0), ErrorRateBelow("attack/"+tag, 0), P95Within("attack/"+tag, "baseline/"+tag, 0.2, 2*time.Millisecond))
			}
			return ths
		},
	}
}

// statusCount counts answers with status code under every tag containing
// sub ("" for all tags).
func statusCount(s *Summary, code int, sub string) int64 {
	var n int64
	for name, t := range s.Tags {
		if strings.Contains(name, sub) {
			n += t.Statuses[code]
		}
	}
	return n
}

// P95Within holds when tag's p95 is at most (1+share) × base's p95, or
// base's p95 + floor, whichever is larger: on loopback a p95 of a few
// milliseconds moves by more than 20 % with scheduler noise alone.
func P95Within(tag, base string, share float64, floor time.Duration) Threshold {
	return Threshold{Name: fmt.Sprintf("p95 %s within %g%% of %s (floor %s)", tag, share*100, base, floor), Eval: func(s *Summary) (string, bool) {
		t, b := s.Tags[tag], s.Tags[base]
		if t == nil || b == nil {
			return "no requests", false
		}
		limit := max(time.Duration(float64(b.P95)*(1+share)), b.P95+floor)
		return fmt.Sprintf("%s vs %s (limit %s)", ms(t.P95), ms(b.P95), ms(limit)), t.P95 <= limit
	}}
}

// Gateway defaults the flood must meet (gateway/app: anonymous 20/s,
// burst 40, per client address).
const (
	anonRate  = 20
	anonBurst = 40
)

// xffHeld holds when the X-Forwarded-For flood got no more through than
// one address's anonymous budget over the attack phase.
func xffHeld(d time.Duration) Threshold {
	allowed := float64(anonBurst) + anonRate*d.Seconds()*1.1 + 5
	return Threshold{Name: fmt.Sprintf("X-Forwarded-For flood: 200s <= one address's budget (%.0f)", allowed), Eval: func(s *Summary) (string, bool) {
		t := s.Tags["attack/atk_xff"]
		if t == nil {
			return "no requests", false
		}
		ok := float64(t.Statuses[200]) <= allowed && t.Statuses[429] > 0
		return fmt.Sprintf("%d of %d answered 200, %d 429", t.Statuses[200], t.Requests, t.Statuses[429]), ok
	}}
}

func runAbuse(ctx context.Context, e *Env, o Options) error {
	e.Rec.SetPhase("setup/")
	m, err := prepareMix(ctx, e, o)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	// Victims' orders and profiles for the BOLA prober.
	var victims []string
	var victimOrders []string
	for _, s := range m.sessions[:min(5, len(m.sessions))] {
		ord, resp, err := createOrder(ctx, s, randomB64(16), []OrderItem{{SKU: m.catalog[0].SKU, Quantity: 1}})
		if err != nil {
			return fmt.Errorf("setup: victim order: %w", err)
		}
		if !resp.OK {
			return fmt.Errorf("setup: victim order: status %d", resp.StatusCode)
		}
		victims, victimOrders = append(victims, s.Subject), append(victimOrders, ord.ID)
	}
	// Decoy accounts for the stuffer: real accounts nobody uses, so a
	// lockout hurts no real user of the run.
	decoys, err := signInUsers(ctx, e, 3, "decoy")
	if err != nil {
		return err
	}
	bolaClient, err := e.attackerClient()
	if err != nil {
		return err
	}
	bolaEmail, bolaPassword := "prober-"+strings.ToLower(randomB64(6))+"@load.rampart.test", randomB64(18)
	if _, err := register(ctx, bolaClient, bolaEmail, bolaPassword); err != nil {
		return err
	}
	prober, err := Login(ctx, bolaClient, bolaEmail, bolaPassword, UserScopes)
	if err != nil {
		return fmt.Errorf("setup: prober sign-in: %w", err)
	}
	kid, err := currentKid(ctx, m.anon[0])
	if err != nil {
		return err
	}

	half := max(o.Duration/2, time.Second)
	schedule := Arrival{StartRate: o.Rate, MaxInFlight: o.MaxInFlight, Stages: []Stage{{Duration: half, Target: o.Rate}}}
	e.logf("baseline: real users alone, %s at %.0f iterations/s", half, o.Rate)
	e.Rec.SetPhase("baseline/")
	_, dropped := schedule.Run(ctx, m.iterate)
	e.Rec.Dropped(dropped)

	before, err := scrapeSecurity(ctx, e.Target)
	if err != nil {
		return err
	}
	e.logf("attack: real users and attackers together, %s", half)
	e.Rec.SetPhase("attack/")
	actx, cancel := context.WithTimeout(ctx, half)
	defer cancel()
	var wg sync.WaitGroup
	attack := func(rate float64, fn func(ctx context.Context, c *Client, i int)) {
		c, err := e.attackerClient()
		if err != nil {
			e.Rec.Check("attacker client", false)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-actx.Done():
					return
				case <-tick.C:
				}
				// The request itself runs on the run's context: one cut off
				// at the phase's end would be counted by the server and
				// not by us, and the counter checks would be off by one.
				fn(ctx, c, i)
			}
		}()
	}
	for range 2 {
		attack(5, func(ctx context.Context, c *Client, i int) {
			target := fmt.Sprintf("victim%d@load.rampart.test", i)
			if i%2 == 0 {
				target = decoys[i%len(decoys)].Email
			}
			stuff(ctx, c, target, randomB64(12))
		})
	}
	kinds := []string{"none", "wrong_key", "expired", "hs256"}
	attack(20, func(ctx context.Context, c *Client, i int) {
		kind := kinds[i%len(kinds)]
		_, _ = c.Do(ctx, Request{Tag: "atk_forged_" + kind, Method: http.MethodGet, Path: "/api/v1/orders", Expect: []int{401, 429},
			Header: http.Header{"Authorization": {"Bearer " + forge(kind, kid, prober.Subject, e.Target.BaseURL)}}})
	})
	attack(10, func(ctx context.Context, _ *Client, i int) {
		_, _, _ = getOrder(ctx, prober, "atk_bola_order", victimOrders[i%len(victimOrders)], 404, 429)
		_, _ = prober.Do(ctx, Request{Tag: "atk_bola_user", Method: http.MethodGet, Path: "/api/v1/users/" + victims[i%len(victims)], Expect: []int{404, 429}})
	})
	attack(100, func(ctx context.Context, c *Client, _ int) {
		ip := randomIP()
		_, _ = c.Do(ctx, Request{Tag: "atk_xff", Method: http.MethodGet, Path: "/api/v1/catalog", Expect: []int{200, 429},
			Header: http.Header{"X-Forwarded-For": {ip}, "X-Real-Ip": {ip}, "Forwarded": {"for=" + ip}, "True-Client-Ip": {ip}}})
	})
	_, dropped = schedule.Run(actx, m.iterate)
	e.Rec.Dropped(dropped)
	cancel()
	wg.Wait()
	e.Rec.SetPhase("")

	after, err := scrapeSecurity(ctx, e.Target)
	if err != nil {
		return err
	}
	delta := func(svc, typ, reason string) float64 {
		return after.sum(svc, typ, reason) - before.sum(svc, typ, reason)
	}
	e.setCounter("gateway token.rejected", delta("gateway", "token.rejected", ""))
	e.setCounter("ratelimit.exceeded (gateway + auth-service)", delta("gateway", "ratelimit.exceeded", "")+delta("auth-service", "ratelimit.exceeded", ""))
	e.setCounter("auth-service auth.login.failed", delta("auth-service", "auth.login.failed", ""))
	e.setCounter("auth-service auth.account.locked", delta("auth-service", "auth.account.locked", ""))
	e.setCounter("user-service access.denied/ownership", delta("user-service", "access.denied", "ownership"))
	e.setCounter("order-service access.denied/ownership", delta("order-service", "access.denied", "ownership"))
	return nil
}

// stuff is one credential-stuffing attempt through the real form.
func stuff(ctx context.Context, c *Client, email, password string) {
	q := "response_type=code&client_id=" + DemoClient + "&redirect_uri=" + callback + "&scope=openid&state=x&code_challenge_method=S256&code_challenge=" +
		base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	resp, err := c.Do(ctx, Request{Tag: "atk_stuff_authorize", Method: http.MethodGet, Path: "/oauth2/authorize?" + q, Expect: []int{303, 302, 429}})
	if err != nil || resp.StatusCode == 429 {
		return
	}
	jar := cookies{}
	jar.keep(resp.Response)
	resp, err = c.Do(ctx, Request{Tag: "atk_stuff_form", Method: http.MethodGet, Path: resp.Header.Get("Location"), Cookies: jar.list(), Expect: []int{200, 429}})
	if err != nil || resp.StatusCode != 200 {
		return
	}
	jar.keep(resp.Response)
	action, values, err := parseForm(resp.Body)
	if err != nil {
		return
	}
	values.Set("email", email)
	values.Set("password", password)
	_, _ = c.Do(ctx, Request{Tag: "atk_stuff_submit", Method: http.MethodPost, Path: action, Body: []byte(values.Encode()), Cookies: jar.list(),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Expect: []int{401, 429}})
}

// forge makes an access token the gateway must refuse.
func forge(kind, kid, sub, issuer string) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": issuer, "sub": sub, "aud": "rampart-api", "client_id": DemoClient, "jti": randomB64(12),
		"scope": "openid orders:read orders:write admin", "roles": []string{"ADMIN"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	switch kind {
	case "none":
		return forgeNone(sub, issuer)
	case "expired":
		claims["iat"], claims["nbf"], claims["exp"] = now.Add(-time.Hour).Unix(), now.Add(-time.Hour).Unix(), now.Add(-50*time.Minute).Unix()
	case "hs256":
		t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		t.Header["kid"], t.Header["typ"] = kid, "at+jwt"
		s, _ := t.SignedString([]byte(kid)) // algorithm confusion: a public value as an HMAC key
		return s
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"], t.Header["typ"] = kid, "at+jwt"
	s, _ := t.SignedString(key)
	return s
}

// forgeNone is an unsigned token (alg none) claiming ADMIN.
func forgeNone(sub, issuer string) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt"})
	c, _ := json.Marshal(map[string]any{"iss": issuer, "sub": sub, "aud": "rampart-api", "roles": []string{"ADMIN"}, "scope": "admin",
		"exp": time.Now().Add(5 * time.Minute).Unix(), "jti": randomB64(12)})
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// currentKid is the kid of the first ES256 key in the JWKS.
func currentKid(ctx context.Context, c *Client) (string, error) {
	resp, err := c.Do(ctx, Request{Tag: "jwks", Method: http.MethodGet, Path: "/.well-known/jwks.json"})
	if err != nil {
		return "", err
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	if err := resp.JSON(&set); err != nil {
		return "", fmt.Errorf("decode JWKS: %w", err)
	}
	for _, k := range set.Keys {
		if k.Alg == "ES256" {
			return k.Kid, nil
		}
	}
	if len(set.Keys) > 0 {
		return set.Keys[0].Kid, nil
	}
	return "", fmt.Errorf("JWKS has no key")
}

func randomIP() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return netip.AddrFrom4([4]byte{203, 0, 113, b[3]}).String()
}

func netipLoopback() netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, 1}) }

// securityCounters are rampart_security_events_total samples by service.
type securityCounters map[string][]secSample

type secSample struct {
	typ, reason string
	v           float64
}

// sum adds the samples of svc with type typ and, when not empty, reason.
func (s securityCounters) sum(svc, typ, reason string) float64 {
	var n float64
	for _, x := range s[svc] {
		if x.typ == typ && (reason == "" || x.reason == reason) {
			n += x.v
		}
	}
	return n
}

// scrapeSecurity reads rampart_security_events_total from every
// service's ops /metrics.
func scrapeSecurity(ctx context.Context, t Target) (securityCounters, error) {
	out := securityCounters{}
	hc := &http.Client{Timeout: 10 * time.Second}
	for svc, ops := range t.Ops {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ops+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %w", svc, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "rampart_security_events_total{") {
				continue
			}
			end := strings.IndexByte(line, '}')
			if end < 0 {
				continue
			}
			labels := parseLabels(line[len("rampart_security_events_total{"):end])
			fields := strings.Fields(line[end+1:])
			if len(fields) == 0 {
				continue
			}
			v, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				continue
			}
			out[labels["service"]] = append(out[labels["service"]], secSample{typ: labels["type"], reason: labels["reason"], v: v})
		}
		_ = resp.Body.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("scrape %s: %w", svc, err)
		}
	}
	return out, nil
}

// parseLabels parses a="x",b="y" (values without escaped quotes: ours
// are bounded identifiers).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[strings.TrimSpace(k)] = strings.Trim(v, `"`)
		}
	}
	return out
}
