package loadtest

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ShowcaseOptions parameterise Showcase.
type ShowcaseOptions struct {
	// Duration is the length of the run after setup (default 75 s).
	Duration time.Duration
	// Rate is the real users' arrival rate in iterations per second
	// (default 8: enough to draw, gentle on a 2-core machine).
	Rate float64
	// Users is the number of real users signed in up front (default 8).
	Users int
	// At is called with each attack wave's name as it starts, for the
	// caller's log and its own waves (the mTLS refusal needs the stack).
	At func(wave string)
}

// Showcase is the scenario the Security overview dashboard's screenshot
// is rendered from (deploy/cmd/dashshot): real users run the realistic
// mix for the whole run while attacks come and go in waves, each from its
// own 127.2.x.y address, so every panel has something to show and the
// attacks stand out against normal traffic:
//
//	10–35 %  credential stuffing through the real login form (failed
//	         logins, per-address login limits, decoy accounts locked)
//	25–50 %  forged access tokens: alg none, a key we made with the real
//	         kid, expired, HS256 (token.rejected by reason)
//	45–70 %  BOLA: a signed-in user probing other users' orders and
//	         profiles (access.denied/ownership)
//	55–75 %  an anonymous flood rotating X-Forwarded-For (rate limits)
//	65 %     a stolen refresh token replayed after its owner used it
//	         (auth.refresh.reused, the family revoked)
//	72 %     a machine client with a wrong secret and an invented
//	         authorization code (auth.client.failed, auth.grant.invalid)
//	80 %     callers without a client certificate at the services (the
//	         caller's "mtls" wave)
//	85–100 % a second, smaller stuffing burst and forged tokens, so the
//	         alerts are firing when the run ends
//
// It has no thresholds: it returns an error only when setup fails.
func Showcase(ctx context.Context, e *Env, o ShowcaseOptions) error {
	if o.Duration <= 0 {
		o.Duration = 75 * time.Second
	}
	if o.Rate <= 0 {
		o.Rate = 8
	}
	if o.Users <= 0 {
		o.Users = 8
	}
	if o.At == nil {
		o.At = func(string) {}
	}
	e.Rec.SetPhase("setup/")
	m, err := prepareMix(ctx, e, Options{Users: o.Users})
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	var victims, victimOrders []string
	for _, s := range m.sessions[:min(4, len(m.sessions))] {
		ord, resp, err := createOrder(ctx, s, randomB64(16), []OrderItem{{SKU: m.catalog[0].SKU, Quantity: 1}})
		if err != nil {
			return fmt.Errorf("setup: victim order: %w", err)
		}
		if !resp.OK {
			return fmt.Errorf("setup: victim order: status %d", resp.StatusCode)
		}
		victims, victimOrders = append(victims, s.Subject), append(victimOrders, ord.ID)
	}
	// Decoys (for the stuffer to lock), the prober and the user whose
	// refresh token is stolen are accounts nobody else in the run uses.
	extra, err := signInUsers(ctx, e, 4, "showcase")
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	decoys, prober, robbed := extra[:2], extra[2], extra[3]
	kid, err := currentKid(ctx, m.anon[0])
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}

	e.Rec.SetPhase("")
	start := time.Now()
	at := func(share float64) time.Time { return start.Add(time.Duration(share * float64(o.Duration))) }
	var wg sync.WaitGroup
	// wave runs fn at rate per second from one attacker address between
	// the shares from and to of the run.
	wave := func(name string, from, to, rate float64, fn func(ctx context.Context, c *Client, i int)) {
		c, err := e.attackerClient()
		if err != nil {
			e.Rec.Check("attacker client", false)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepUntil(ctx, at(from)) {
				return
			}
			o.At(name)
			wctx, cancel := context.WithDeadline(ctx, at(to))
			defer cancel()
			tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-wctx.Done():
					return
				case <-tick.C:
				}
				fn(wctx, c, i)
			}
		}()
	}
	once := func(name string, share float64, fn func(ctx context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sleepUntil(ctx, at(share)) {
				o.At(name)
				fn(ctx)
			}
		}()
	}

	stuffing := func(_ context.Context, c *Client, i int) {
		target := fmt.Sprintf("victim%d@load.rampart.test", i)
		if i%2 == 0 {
			target = decoys[i%len(decoys)].Email
		}
		stuff(ctx, c, target, randomB64(12))
	}
	for range 3 {
		wave("credential stuffing", 0.10, 0.35, 1.5, stuffing)
	}
	kinds := []string{"none", "wrong_key", "expired", "hs256"}
	forged := func(ctx context.Context, c *Client, i int) {
		kind := kinds[i%len(kinds)]
		_, _ = c.Do(ctx, Request{Tag: "atk_forged_" + kind, Method: http.MethodGet, Path: "/api/v1/orders", Expect: []int{401, 429},
			Header: http.Header{"Authorization": {"Bearer " + forge(kind, kid, prober.Subject, e.Target.BaseURL)}}})
	}
	wave("forged tokens", 0.25, 0.50, 6, forged)
	wave("BOLA probing", 0.45, 0.70, 4, func(ctx context.Context, _ *Client, i int) {
		_, _, _ = getOrder(ctx, prober, "atk_bola_order", victimOrders[i%len(victimOrders)], 404, 429)
		if i%2 == 0 {
			_, _ = prober.Do(ctx, Request{Tag: "atk_bola_user", Method: http.MethodGet, Path: "/api/v1/users/" + victims[i%len(victims)], Expect: []int{404, 429}})
		}
	})
	wave("X-Forwarded-For flood", 0.55, 0.75, 40, func(ctx context.Context, c *Client, _ int) {
		ip := randomIP()
		_, _ = c.Do(ctx, Request{Tag: "atk_xff", Method: http.MethodGet, Path: "/api/v1/catalog", Expect: []int{200, 429},
			Header: http.Header{"X-Forwarded-For": {ip}, "X-Real-Ip": {ip}, "Forwarded": {"for=" + ip}, "True-Client-Ip": {ip}}})
	})
	once("refresh-token reuse", 0.65, func(ctx context.Context) {
		_, stolen, _ := robbed.Tokens()
		if err := robbed.Refresh(ctx); err != nil {
			e.Rec.Check("showcase: the robbed user refreshes", false)
			return
		}
		thief, err := e.attackerClient()
		if err != nil {
			return
		}
		_, _ = thief.Do(ctx, Request{Tag: "atk_refresh_reuse", Method: http.MethodPost, Path: "/oauth2/token", Expect: []int{400},
			Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			Body:   []byte(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {stolen}, "client_id": {DemoClient}}.Encode())})
	})
	once("bad client credentials", 0.72, func(ctx context.Context) {
		c, err := e.attackerClient()
		if err != nil {
			return
		}
		form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		for i := range 4 {
			h := form.Clone()
			h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("rampart-machine:guess-"+randomB64(8))))
			_, _ = c.Do(ctx, Request{Tag: "atk_client_secret", Method: http.MethodPost, Path: "/oauth2/token", Header: h, Expect: []int{401, 429},
				Body: []byte(url.Values{"grant_type": {"client_credentials"}}.Encode())})
			_, _ = c.Do(ctx, Request{Tag: "atk_code", Method: http.MethodPost, Path: "/oauth2/token", Header: form, Expect: []int{400, 429},
				Body: []byte(url.Values{"grant_type": {"authorization_code"}, "code": {"invented-" + randomB64(12)}, "client_id": {DemoClient},
					"redirect_uri": {callback}, "code_verifier": {strings.Repeat("v", 43+i)}}.Encode())})
			time.Sleep(2 * time.Second)
		}
	})
	once("mtls", 0.80, func(context.Context) {})
	for range 2 {
		wave("second stuffing burst", 0.85, 1, 1, stuffing)
	}
	wave("forged tokens again", 0.88, 1, 3, forged)

	schedule := Arrival{StartRate: o.Rate, MaxInFlight: 32, Stages: []Stage{{Duration: o.Duration, Target: o.Rate}}}
	_, dropped := schedule.Run(ctx, m.iterate)
	e.Rec.Dropped(dropped)
	wg.Wait()
	return nil
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
