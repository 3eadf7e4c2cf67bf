package loadtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// smokeScenario calls every public route once with checks on what the
// contract promises; every check must pass. CI runs it against the
// in-process stack.
func smokeScenario() Scenario {
	return Scenario{
		Name:     "smoke",
		About:    "every public route once; every check must pass (CI runs it against the in-process stack)",
		Defaults: Options{Rate: 1, Duration: time.Second, Users: 1, MaxInFlight: 1},
		Run:      runSmoke,
		Thresholds: func(Options) []Threshold {
			return []Threshold{ChecksPass(), NoUnexpected401(), ErrorRateBelow("", 0)}
		},
	}
}

// smoke carries the state of one smoke run.
type smoke struct {
	e   *Env
	ctx context.Context
}

// check records a named check; failures are logged with the detail.
func (s *smoke) check(name string, ok bool, detail ...any) bool {
	if !ok {
		s.e.logf("FAIL %s %s", name, fmt.Sprint(detail...))
	}
	return s.e.Rec.Check(name, ok)
}

func (s *smoke) get(c *Client, tag, path string, expect ...int) *Response {
	resp, err := c.Do(s.ctx, Request{Tag: tag, Method: http.MethodGet, Path: path, Expect: expect})
	if !s.check(tag+" answers", err == nil, err) {
		return &Response{Response: &http.Response{Header: http.Header{}}}
	}
	return resp
}

func (s *smoke) as(sess *Session, req Request) *Response {
	resp, err := sess.Do(s.ctx, req)
	if !s.check(req.Tag+" answers", err == nil, err) {
		return &Response{Response: &http.Response{Header: http.Header{}}}
	}
	return resp
}

// status checks resp's status and returns whether it matched.
func (s *smoke) status(name string, resp *Response, want int) bool {
	return s.check(fmt.Sprintf("%s is %d", name, want), resp.StatusCode == want, resp.StatusCode, " ", string(resp.Body))
}

func runSmoke(ctx context.Context, e *Env, _ Options) error {
	s := &smoke{e: e, ctx: ctx}
	anon, err := e.userClient()
	if err != nil {
		return err
	}
	t := e.Target

	// Discovery, keys, health.
	resp := s.get(anon, "discovery", "/.well-known/openid-configuration")
	var disco struct {
		Issuer string   `json:"issuer"`
		Grants []string `json:"grant_types_supported"`
		PKCE   []string `json:"code_challenge_methods_supported"`
	}
	_ = resp.JSON(&disco)
	s.check("discovery issuer is the gateway", disco.Issuer == t.BaseURL, disco.Issuer)
	s.check("discovery lists grant types and S256", len(disco.Grants) > 0 && slices.Equal(disco.PKCE, []string{"S256"}), disco)
	jwksBefore := s.jwksKids(anon)
	s.check("jwks has keys with kid", len(jwksBefore) > 0)
	s.status("healthz", s.get(anon, "healthz", "/healthz"), 200)
	s.status("readyz", s.get(anon, "readyz", "/readyz"), 200)

	// Catalogue.
	cat, resp, err := catalog(ctx, anon)
	s.check("catalog answers", err == nil, err)
	s.status("catalog", resp, 200)
	s.check("catalog has priced items", len(cat) > 0 && cat[0].SKU != "" && cat[0].PriceCents > 0 && cat[0].Currency != "", cat)
	if len(cat) == 0 {
		return fmt.Errorf("smoke: empty catalogue, cannot go on")
	}
	prices := map[string]int64{}
	for _, it := range cat {
		prices[it.SKU] = it.PriceCents
	}

	// A new user: register, sign in through the browser flow.
	newbie, err := e.userClient()
	if err != nil {
		return err
	}
	email, password := "smoke-"+strings.ToLower(randomB64(6))+"@load.rampart.test", randomB64(18)
	_, err = register(ctx, newbie, email, password)
	s.check("register is 201", err == nil, err)
	me, err := Login(ctx, newbie, email, password, UserScopes)
	if !s.check("new user signs in with code + PKCE", err == nil, err) {
		return fmt.Errorf("smoke: sign in: %w", err)
	}
	resp = s.as(me, Request{Tag: "userinfo", Method: http.MethodGet, Path: "/oauth2/userinfo"})
	var ui struct {
		Sub   string `json:"sub"`
		Email string `json:"email"`
	}
	_ = resp.JSON(&ui)
	s.check("userinfo names the user", resp.StatusCode == 200 && ui.Sub == me.Subject && ui.Email == email, ui)

	// Profile: made from account.created by a consumer, so wait for it.
	var profile map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp = s.as(me, Request{Tag: "users_me_wait", Method: http.MethodGet, Path: "/api/v1/users/me", Expect: []int{200, 404}})
		if resp.StatusCode != 404 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp = s.as(me, Request{Tag: "users_me", Method: http.MethodGet, Path: "/api/v1/users/me"})
	_ = resp.JSON(&profile)
	s.check("GET /users/me is the caller's profile", resp.StatusCode == 200 && profile["id"] == me.Subject, resp.StatusCode, string(resp.Body))
	resp = s.as(me, Request{Tag: "users_me_patch", Method: http.MethodPatch, Path: "/api/v1/users/me", Header: jsonHeader,
		Body: jsonBody(map[string]string{"display_name": "Smoke Tester"})})
	s.check("PATCH /users/me changes the name", resp.StatusCode == 200 && strings.Contains(string(resp.Body), "Smoke Tester"), resp.StatusCode)
	resp = s.as(me, Request{Tag: "users_me_patch_bad", Method: http.MethodPatch, Path: "/api/v1/users/me", Header: jsonHeader,
		Body: jsonBody(map[string]string{"email": "x@example.com"}), Expect: []int{400}})
	s.status("PATCH /users/me with email", resp, 400)
	resp = s.as(me, Request{Tag: "users_get", Method: http.MethodGet, Path: "/api/v1/users/" + me.Subject})
	s.status("GET /users/{self}", resp, 200)

	// Bearer errors (RFC 6750).
	resp, _ = anon.Do(ctx, Request{Tag: "orders_no_token", Method: http.MethodGet, Path: "/api/v1/orders", Expect: []int{401}})
	if resp != nil {
		s.check("no token is 401 with a bare challenge", resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == `Bearer realm="rampart"`, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = anon.Do(ctx, Request{Tag: "orders_bad_token", Method: http.MethodGet, Path: "/api/v1/orders", Expect: []int{401},
		Header: http.Header{"Authorization": {"Bearer " + forgeNone(me.Subject, t.BaseURL)}}})
	if resp != nil {
		s.check("forged token is 401 invalid_token", resp.StatusCode == 401 && strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`), resp.Header.Get("WWW-Authenticate"))
	}

	// Orders: create (idempotent), list, read, cancel.
	items := []OrderItem{{SKU: cat[0].SKU, Quantity: 2}}
	if len(cat) > 1 {
		items = append(items, OrderItem{SKU: cat[1].SKU, Quantity: 1})
	}
	var want int64
	for _, it := range items {
		want += prices[it.SKU] * int64(it.Quantity)
	}
	key := randomB64(16)
	o, resp, err := createOrder(ctx, me, key, items)
	s.check("POST /orders answers", err == nil, err)
	s.status("POST /orders", resp, 201)
	s.check("order is pending, mine, priced by the server", o != nil && o.Status == "pending" && o.UserID == me.Subject && o.TotalCents == want && o.ID != "", o)
	o2, resp, err := createOrder(ctx, me, key, items)
	s.check("POST /orders replay answers", err == nil, err)
	s.check("Idempotency-Key replay returns the same order", resp != nil && resp.OK && o2 != nil && o != nil && o2.ID == o.ID, o2)
	list, resp, err := listOrders(ctx, me, 20)
	s.check("GET /orders answers", err == nil, err)
	s.check("GET /orders lists exactly the new order", resp != nil && resp.StatusCode == 200 && len(list) == 1 && o != nil && list[0].ID == o.ID, list)
	// Another user may not see the new user's things: 404, not 403.
	other, err := e.userClient()
	if err != nil {
		return err
	}
	u := t.Credentials.Accounts["user"]
	peer, err := Login(ctx, other, u.Email, u.Password, UserScopes)
	if !s.check("demo user signs in", err == nil, err) {
		return err
	}
	resp = s.as(peer, Request{Tag: "users_get_foreign", Method: http.MethodGet, Path: "/api/v1/users/" + me.Subject, Expect: []int{404}})
	s.status("another user's profile", resp, 404)
	resp = s.as(peer, Request{Tag: "users_list_user", Method: http.MethodGet, Path: "/api/v1/users", Expect: []int{403}})
	s.status("GET /users as USER", resp, 403)

	// Without an order the order checks below have nothing to read; the
	// failed checks above already fail the run, the rest still runs.
	haveOrder := s.check("an order exists to read", o != nil && o.ID != "")
	if haveOrder {
		got, resp, _ := getOrder(ctx, me, "orders_get", o.ID, 200)
		s.check("GET /orders/{id} is the order", resp != nil && resp.StatusCode == 200 && got.ID == o.ID && got.TotalCents == want, got)
		_, resp, _ = getOrder(ctx, peer, "orders_get_foreign", o.ID, 404)
		s.check("another user's order is 404, not 403", resp != nil && resp.StatusCode == 404, code(resp))
		resp = s.as(me, Request{Tag: "orders_patch_user", Method: http.MethodPatch, Path: "/api/v1/orders/" + o.ID, Header: jsonHeader,
			Body: jsonBody(map[string]string{"status": "paid"}), Expect: []int{403}})
		s.status("PATCH /orders/{id} as USER", resp, 403)
		resp = s.as(me, Request{Tag: "orders_cancel", Method: http.MethodPost, Path: "/api/v1/orders/" + o.ID + "/cancel"})
		var cancelled Order
		_ = resp.JSON(&cancelled)
		s.check("owner cancels a pending order", resp.StatusCode == 200 && cancelled.Status == "cancelled", resp.StatusCode, string(resp.Body))
	}

	// Manager: every profile, order status changes.
	mgrClient, err := e.userClient()
	if err != nil {
		return err
	}
	m := t.Credentials.Accounts["manager"]
	mgr, err := Login(ctx, mgrClient, m.Email, m.Password, UserScopes)
	if !s.check("manager signs in", err == nil, err) {
		return err
	}
	resp = s.as(mgr, Request{Tag: "users_list", Method: http.MethodGet, Path: "/api/v1/users?limit=5"})
	var users page[map[string]any]
	_ = resp.JSON(&users)
	s.check("GET /users as MANAGER is a page", resp.StatusCode == 200 && len(users.Items) > 0, resp.StatusCode)
	o3, _, err := createOrder(ctx, me, randomB64(16), items[:1])
	if s.check("second order is created", err == nil && o3 != nil && o3.ID != "", err) {
		resp = s.as(mgr, Request{Tag: "orders_patch", Method: http.MethodPatch, Path: "/api/v1/orders/" + o3.ID, Header: jsonHeader,
			Body: jsonBody(map[string]string{"status": "paid"})})
		var paid Order
		_ = resp.JSON(&paid)
		s.check("MANAGER moves an order to paid", resp.StatusCode == 200 && paid.Status == "paid", resp.StatusCode, string(resp.Body))
		_, resp, _ = getOrder(ctx, mgr, "orders_get_manager", o3.ID, 200)
		s.status("MANAGER reads any order", resp, 200)
	}

	// Admin: the account API and a signing-key rotation the users never
	// notice.
	adminClient, err := e.plainClient()
	if err != nil {
		return err
	}
	admin, err := AdminSession(ctx, adminClient, t)
	if !s.check("admin signs in with scope admin", err == nil, err) {
		return err
	}
	resp = s.as(admin, Request{Tag: "auth_accounts", Method: http.MethodGet, Path: "/api/v1/auth/accounts?limit=5"})
	s.status("GET /auth/accounts as ADMIN", resp, 200)
	resp = s.as(me, Request{Tag: "auth_accounts_user", Method: http.MethodGet, Path: "/api/v1/auth/accounts", Expect: []int{403}})
	s.status("GET /auth/accounts as USER", resp, 403)
	resp = s.as(admin, Request{Tag: "keys_rotate", Method: http.MethodPost, Path: "/api/v1/auth/keys/rotate", Expect: []int{204}})
	s.status("POST /auth/keys/rotate", resp, 204)
	after := s.jwksKids(anon)
	s.check("JWKS keeps the previous key and adds the new one", len(after) > len(jwksBefore) || !slices.Equal(after, jwksBefore), jwksBefore, after)
	resp = s.as(me, Request{Tag: "users_me_rotated", Method: http.MethodGet, Path: "/api/v1/users/me"})
	s.check("a token signed before the rotation still works", resp != nil && resp.StatusCode == 200, code(resp))
	err = me.Refresh(ctx)
	s.check("refresh after the rotation", err == nil, err)
	resp = s.as(me, Request{Tag: "users_me_new_key", Method: http.MethodGet, Path: "/api/v1/users/me"})
	s.check("the refreshed token (new key) works", resp != nil && resp.StatusCode == 200, code(resp))

	// Machine client: client_credentials, introspection, revocation.
	machine := t.secret("rampart-machine")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape("rampart-machine")+":"+url.QueryEscape(machine)))
	form := func(tag string, path string, v url.Values, expect ...int) *Response {
		r, err := anon.Do(ctx, Request{Tag: tag, Method: http.MethodPost, Path: path, Body: []byte(v.Encode()), Expect: expect,
			Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {basic}}})
		if !s.check(tag+" answers", err == nil, err) {
			return &Response{Response: &http.Response{Header: http.Header{}}}
		}
		return r
	}
	resp = form("token_client_credentials", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}})
	s.status("client_credentials", resp, 200)
	access, _, _ := me.Tokens()
	resp = form("introspect", "/oauth2/introspect", url.Values{"token": {access}})
	var intro struct {
		Active bool   `json:"active"`
		Sub    string `json:"sub"`
	}
	_ = json.Unmarshal(resp.Body, &intro)
	s.check("introspection: the user's token is active", resp.StatusCode == 200 && intro.Active && intro.Sub == me.Subject, string(resp.Body))

	// The demo user revokes its refresh token (RFC 7009), then signs out.
	_, peerRefresh, peerID := peer.Tokens()
	refreshForm := func(tag, path string, v url.Values, expect int) *Response {
		r, err := peer.c.Do(ctx, Request{Tag: tag, Method: http.MethodPost, Path: path, Body: []byte(v.Encode()), Expect: []int{expect},
			Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}})
		if !s.check(tag+" answers", err == nil, err) {
			return &Response{Response: &http.Response{Header: http.Header{}}}
		}
		return r
	}
	resp = refreshForm("revoke", "/oauth2/revoke", url.Values{"token": {peerRefresh}, "client_id": {DemoClient}}, 200)
	s.status("POST /oauth2/revoke", resp, 200)
	resp = refreshForm("token_refresh_revoked", "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {peerRefresh}, "client_id": {DemoClient}}, 400)
	s.check("a revoked refresh token is invalid_grant", resp.StatusCode == 400 && strings.Contains(string(resp.Body), "invalid_grant"), resp.StatusCode, string(resp.Body))
	resp, err = peer.c.Do(ctx, Request{Tag: "logout", Method: http.MethodGet, Path: "/oauth2/logout?" + url.Values{"id_token_hint": {peerID}}.Encode(),
		Cookies: peer.browser.list()})
	s.check("GET /oauth2/logout is 200", err == nil && resp.StatusCode == 200, err)

	// Erasure: the user deletes themself; their token stops working.
	resp = s.as(me, Request{Tag: "users_delete", Method: http.MethodDelete, Path: "/api/v1/users/" + me.Subject, Expect: []int{204}})
	s.status("DELETE /users/{self}", resp, 204)
	gone := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		r, err := newbie.Do(ctx, Request{Tag: "users_me_erased", Method: http.MethodGet, Path: "/api/v1/users/me", Expect: []int{200, 401, 404},
			Header: http.Header{"Authorization": {"Bearer " + access}}})
		if err == nil && r.StatusCode == 401 {
			gone = true
			break
		}
	}
	s.check("after erasure the user's token is refused", gone)
	return nil
}

// jwksKids lists the JWKS key ids.
func (s *smoke) jwksKids(c *Client) []string {
	resp := s.get(c, "jwks", "/.well-known/jwks.json")
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	_ = resp.JSON(&set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	return kids
}

// code is a response's status for failure details (0: no response).
func code(r *Response) int {
	if r == nil || r.Response == nil {
		return 0
	}
	return r.StatusCode
}

// AdminSession signs the demo admin in with scope admin.
func AdminSession(ctx context.Context, c *Client, t Target) (*Session, error) {
	a, ok := t.Credentials.Accounts["admin"]
	if !ok {
		return nil, fmt.Errorf("credentials have no admin account")
	}
	return Login(ctx, c, a.Email, a.Password, "openid admin")
}

// RotateKeys forces a signing-key rotation through the admin API
// (POST /api/v1/auth/keys/rotate, ADMIN with scope admin).
func RotateKeys(ctx context.Context, t Target) error {
	rec := NewRecorder()
	c, err := t.NewClient(rec, netipLoopback())
	if err != nil {
		return err
	}
	defer c.Close()
	admin, err := AdminSession(ctx, c, t)
	if err != nil {
		return fmt.Errorf("admin sign-in: %w", err)
	}
	resp, err := admin.Do(ctx, Request{Tag: "keys_rotate", Method: http.MethodPost, Path: "/api/v1/auth/keys/rotate", Expect: []int{http.StatusNoContent}})
	if err != nil {
		return err
	}
	if !resp.OK {
		return fmt.Errorf("rotate: status %d: %s", resp.StatusCode, resp.Body)
	}
	return nil
}
