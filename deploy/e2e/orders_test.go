package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/natsx"
)

func first[A, B any](a A, _ B) A { return a }

// orderJSON is an order as the API returns it (CONTRACT §2).
type orderJSON struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Status string `json:"status"`
	Items  []struct {
		SKU        string `json:"sku"`
		Quantity   int    `json:"quantity"`
		PriceCents int64  `json:"price_cents"`
	} `json:"items"`
	TotalCents      int64     `json:"total_cents"`
	Currency        string    `json:"currency"`
	ShippingAddress string    `json:"shipping_address"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

type orderPage struct {
	Items      []orderJSON `json:"items"`
	NextCursor string      `json:"next_cursor"`
}

const mugOrder = `{"items":[{"sku":"RMP-MUG","quantity":2}]}`

// placeOrder creates an order through the gateway and returns it.
func (e *env) placeOrder(t testing.TB, who person, body string, hdr http.Header) orderJSON {
	t.Helper()
	st, resp := e.do(t, e.public, http.MethodPost, "/api/v1/orders", who.token, []byte(body), hdr)
	if st != http.StatusCreated {
		t.Fatalf("%s places %s: %d %s", who.name, body, st, resp)
	}
	var o orderJSON
	if err := json.Unmarshal(resp, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// setStatus moves an order as staff.
func (e *env) setStatus(t testing.TB, staff person, id, status string) {
	t.Helper()
	st, body := e.do(t, e.public, http.MethodPatch, "/api/v1/orders/"+id, staff.token, []byte(`{"status":"`+status+`"}`), nil)
	if st != http.StatusOK {
		t.Fatalf("%s sets %s to %s: %d %s", staff.name, id, status, st, body)
	}
}

func (e *env) listOrders(t testing.TB, who person, query string) (int, orderPage) {
	t.Helper()
	st, body := e.do(t, e.public, http.MethodGet, "/api/v1/orders"+query, who.token, nil, nil)
	var p orderPage
	if st == http.StatusOK {
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
	}
	return st, p
}

// TestOrderBOLAMatrix is every order route × every role × own/other order,
// through the gateway, with the status and the access.denied reason each
// must produce (counted on order-service's metric).
func TestOrderBOLAMatrix(t *testing.T) {
	e := start(t)
	admin, manager, alice, bob := e.cast(t)
	user := e.Credentials.Accounts["user"]
	noScopes := person{name: "no scopes", token: e.signInAs(t, user.Email, user.Password, "openid")}
	readOnly := person{name: "orders:read only", token: e.signInAs(t, user.Email, user.Password, "openid orders:read orders:write")}

	mine := e.placeOrder(t, alice, mugOrder, nil)
	paid := e.placeOrder(t, alice, mugOrder, nil)
	e.setStatus(t, manager, paid.ID, "paid")
	theirs := e.placeOrder(t, bob, mugOrder, nil)
	unknown := uuid.NewString()

	type row struct {
		who          person
		method, path string
		body         string
		want         int
		denied       string
	}
	rows := []row{
		{alice, "GET", "/api/v1/orders", "", 200, ""},
		{alice, "GET", "/api/v1/orders?user_id=" + alice.id, "", 200, ""},
		{alice, "GET", "/api/v1/orders?user_id=" + bob.id, "", 403, "role"},
		{alice, "GET", "/api/v1/orders/" + mine.ID, "", 200, ""},
		{alice, "GET", "/api/v1/orders/" + theirs.ID, "", 404, "ownership"},
		{alice, "GET", "/api/v1/orders/" + unknown, "", 404, ""},
		{alice, "GET", "/api/v1/orders/not-a-uuid", "", 404, ""},
		{alice, "GET", "/api/v1/orders/" + strings.ToUpper(theirs.ID), "", 404, ""},
		{alice, "POST", "/api/v1/orders/" + theirs.ID + "/cancel", "", 404, "ownership"},
		{alice, "POST", "/api/v1/orders/" + paid.ID + "/cancel", "", 403, "role"},
		{alice, "PATCH", "/api/v1/orders/" + mine.ID, `{"status":"paid"}`, 403, "role"},
		{alice, "PATCH", "/api/v1/orders/" + theirs.ID, `{"status":"cancelled"}`, 403, "role"},
		{bob, "GET", "/api/v1/orders/" + mine.ID, "", 404, "ownership"},
		{manager, "GET", "/api/v1/orders/" + theirs.ID, "", 200, ""},
		{manager, "GET", "/api/v1/orders?user_id=" + bob.id, "", 200, ""},
		{manager, "GET", "/api/v1/orders", "", 200, ""},
		{manager, "PATCH", "/api/v1/orders/" + theirs.ID, `{"status":"paid"}`, 200, ""},
		{admin, "GET", "/api/v1/orders/" + mine.ID, "", 200, ""},
		{admin, "PATCH", "/api/v1/orders/" + unknown, `{"status":"paid"}`, 404, ""},
		{admin, "POST", "/api/v1/orders/" + paid.ID + "/cancel", "", 200, ""},
		{noScopes, "GET", "/api/v1/orders", "", 403, "scope"},
		{noScopes, "POST", "/api/v1/orders", mugOrder, 403, "scope"},
		{readOnly, "POST", "/api/v1/orders", mugOrder, 403, "scope"}, // placing needs users:read too
		{alice, "POST", "/api/v1/orders/" + mine.ID + "/cancel", "", 200, ""},
		{alice, "POST", "/api/v1/orders/" + mine.ID + "/cancel", "", 403, "role"}, // cancelled is not pending
	}
	reasons := []string{"ownership", "role", "scope"}
	for _, r := range rows {
		name := r.who.name + " " + r.method + " " + r.path
		for id, label := range map[string]string{mine.ID: "{own}", paid.ID: "{own paid}", theirs.ID: "{other}", unknown: "{unknown}"} {
			name = strings.ReplaceAll(name, id, label)
		}
		t.Run(name, func(t *testing.T) {
			before := e.deniedCounts(t, stack.Order, reasons)
			var body []byte
			if r.body != "" {
				body = []byte(r.body)
			}
			st, resp := e.do(t, e.public, r.method, r.path, r.who.token, body, nil)
			if st != r.want {
				t.Fatalf("status %d, want %d: %s", st, r.want, resp)
			}
			after := e.deniedCounts(t, stack.Order, reasons)
			for _, reason := range reasons {
				want := 0.0
				if reason == r.denied {
					want = 1
				}
				if got := after[reason] - before[reason]; got != want {
					t.Errorf("access.denied/%s grew by %v, want %v", reason, got, want)
				}
			}
			if st >= 400 && !strings.Contains(string(resp), `"status"`) {
				t.Errorf("refusal is not problem+json: %s", resp)
			}
		})
	}

	t.Run("a customer's list holds only their orders", func(t *testing.T) {
		_, p := e.listOrders(t, alice, "")
		if len(p.Items) != 2 {
			t.Fatalf("alice sees %d orders", len(p.Items))
		}
		for _, o := range p.Items {
			if o.UserID != alice.id {
				t.Errorf("alice sees %s's order", o.UserID)
			}
		}
		_, all := e.listOrders(t, admin, "")
		_, bobs := e.listOrders(t, manager, "?user_id="+bob.id)
		if len(all.Items) != 3 || len(bobs.Items) != 1 || bobs.Items[0].ID != theirs.ID {
			t.Errorf("admin sees %d, manager filtering bob sees %d", len(all.Items), len(bobs.Items))
		}
	})

	t.Run("the ownership refusal is a security event on the stream", func(t *testing.T) {
		next := e.securityEvents(t, "rampart.security.order-service.access.denied")
		req, _ := http.NewRequest(http.MethodGet, e.Endpoints.Gateway+"/api/v1/orders/"+theirs.ID, nil)
		req.Header.Set("Authorization", "Bearer "+alice.token)
		resp, err := e.public.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		rid := resp.Header.Get("X-Request-Id")
		if resp.StatusCode != 404 || rid == "" {
			t.Fatalf("status %d, request id %q", resp.StatusCode, rid)
		}
		for { // skip the matrix's events; next fails the test after 5 s of silence
			d := dataOf(t, first(next()))
			if d["request_id"] != rid {
				continue
			}
			if d["reason"] != "ownership" || d["subject"] != alice.id || d["route"] != "/api/v1/orders/:id" {
				t.Errorf("event %v", d)
			}
			return
		}
	})
}

// TestOrderCreateValidatesAndPricesOnTheServer: the server computes every
// price and the total; the client can set none of them, nor the owner or
// status; every invalid request is a 400 and writes nothing.
func TestOrderCreateValidatesAndPricesOnTheServer(t *testing.T) {
	e := start(t)
	_, _, alice, _ := e.cast(t)
	if st, body := e.do(t, e.public, "PATCH", "/api/v1/users/me", alice.token, []byte(`{"address":"1 Rampart Way, Ramparton"}`), nil); st != 200 {
		t.Fatalf("set address: %d %s", st, body)
	}
	created := e.domainEvents(t, "order.created")

	o := e.placeOrder(t, alice, `{"items":[{"sku":"RMP-MUG","quantity":3},{"sku":"RMP-HOODIE","quantity":1}]}`, nil)
	if o.UserID != alice.id || o.Status != "pending" || o.Currency != "EUR" || o.TotalCents != 3*1450+5900 ||
		len(o.Items) != 2 || o.Items[0].PriceCents != 1450 || o.Items[1].PriceCents != 5900 {
		t.Fatalf("order %+v", o)
	}
	if o.ShippingAddress != "1 Rampart Way, Ramparton" {
		t.Errorf("shipping address %q: not the profile's", o.ShippingAddress)
	}
	if u, err := uuid.Parse(o.ID); err != nil || u.Version() != 7 {
		t.Errorf("order id %s", o.ID)
	}
	ev := created.find("order.created for the order", func(ev natsx.Event) bool { return ev.Subject == o.ID })
	if d := dataOf(t, ev); d["user_id"] != alice.id || d["total_cents"] != float64(o.TotalCents) {
		t.Errorf("order.created %v", d)
	}

	bad := map[string]string{
		"client price":        `{"items":[{"sku":"RMP-MUG","quantity":1,"price_cents":1}]}`,
		"client total":        `{"items":[{"sku":"RMP-MUG","quantity":1}],"total_cents":1}`,
		"client owner":        `{"items":[{"sku":"RMP-MUG","quantity":1}],"user_id":"` + uuid.NewString() + `"}`,
		"client status":       `{"items":[{"sku":"RMP-MUG","quantity":1}],"status":"paid"}`,
		"client id":           `{"id":"` + uuid.NewString() + `","items":[{"sku":"RMP-MUG","quantity":1}]}`,
		"unknown sku":         `{"items":[{"sku":"RMP-NOPE","quantity":1}]}`,
		"no items":            `{"items":[]}`,
		"quantity 0":          `{"items":[{"sku":"RMP-MUG","quantity":0}]}`,
		"quantity 1001":       `{"items":[{"sku":"RMP-MUG","quantity":1001}]}`,
		"negative quantity":   `{"items":[{"sku":"RMP-MUG","quantity":-1}]}`,
		"fractional quantity": `{"items":[{"sku":"RMP-MUG","quantity":1.5}]}`,
		"duplicate key":       `{"items":[{"sku":"RMP-MUG","quantity":1,"quantity":1000}]}`,
		"101 lines":           `{"items":[` + strings.Repeat(`{"sku":"RMP-MUG","quantity":1},`, 100) + `{"sku":"RMP-MUG","quantity":1}]}`,
		"not json":            `items=RMP-MUG`,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			st, resp := e.do(t, e.public, "POST", "/api/v1/orders", alice.token, []byte(body), nil)
			if st != http.StatusBadRequest || !strings.Contains(string(resp), `"status":400`) {
				t.Fatalf("%d %s", st, resp)
			}
		})
	}
	if _, p := e.listOrders(t, alice, ""); len(p.Items) != 1 {
		t.Errorf("invalid requests left %d orders", len(p.Items)-1)
	}
	if extra := created.rest(500 * time.Millisecond); len(extra) != 0 {
		t.Errorf("invalid requests published %d order.created", len(extra))
	}
}

// TestOrderIdempotencyReplay: the same Idempotency-Key with the same body
// returns the same order (and says so); with another body it is a 422; the
// key is the customer's own, so another customer's identical key is a new
// order. One order.created per order.
func TestOrderIdempotencyReplay(t *testing.T) {
	e := start(t)
	_, _, alice, bob := e.cast(t)
	created := e.domainEvents(t, "order.created")
	key := http.Header{"Idempotency-Key": {"checkout-" + uuid.NewString()}}

	first := e.placeOrder(t, alice, mugOrder, key)
	for _, body := range []string{mugOrder, "{ \"items\" : [ {\"quantity\":2,\"sku\":\"RMP-MUG\"} ] }"} {
		req, _ := http.NewRequest(http.MethodPost, e.Endpoints.Gateway+"/api/v1/orders", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+alice.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key.Get("Idempotency-Key"))
		resp, err := e.public.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var again orderJSON
		_ = json.NewDecoder(resp.Body).Decode(&again)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || again.ID != first.ID || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %s replayed=%q", resp.StatusCode, again.ID, resp.Header.Get("Idempotent-Replayed"))
		}
	}
	st, body := e.do(t, e.public, "POST", "/api/v1/orders", alice.token, []byte(`{"items":[{"sku":"RMP-MUG","quantity":3}]}`), key)
	if st != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body: %d %s", st, body)
	}
	if st, body := e.do(t, e.public, "POST", "/api/v1/orders", alice.token, []byte(mugOrder), http.Header{"Idempotency-Key": {"bad key"}}); st != 400 {
		t.Fatalf("malformed key: %d %s", st, body)
	}
	other := e.placeOrder(t, bob, mugOrder, key)
	if other.ID == first.ID || other.UserID != bob.id {
		t.Fatalf("bob's request with alice's key got %+v", other)
	}
	if _, p := e.listOrders(t, alice, ""); len(p.Items) != 1 {
		t.Errorf("alice has %d orders after replays", len(p.Items))
	}
	events := created.rest(time.Second)
	if len(events) != 2 {
		t.Errorf("%d order.created for 2 orders", len(events))
	}
}

// TestOrderListPagination: bounded keyset pages, newest first, and
// malformed bounds refused with a field error.
func TestOrderListPagination(t *testing.T) {
	e := start(t)
	_, _, alice, _ := e.cast(t)
	var ids []string
	for range 5 {
		ids = append([]string{e.placeOrder(t, alice, mugOrder, nil).ID}, ids...)
	}
	var got []string
	query := "?limit=2"
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		st, p := e.listOrders(t, alice, query)
		if st != 200 || len(p.Items) > 2 {
			t.Fatalf("page %d: %d, %d items", pages, st, len(p.Items))
		}
		for _, o := range p.Items {
			got = append(got, o.ID)
		}
		if p.NextCursor == "" {
			break
		}
		query = "?limit=2&cursor=" + p.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("pages %v\nwant %v", got, ids)
	}
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?cursor=garbage", "?cursor=" + strings.Repeat("A", 100), "?user_id=not-a-uuid"} {
		if st, _ := e.listOrders(t, alice, q); st != http.StatusBadRequest {
			t.Errorf("%s: %d", q, st)
		}
	}
	if st, p := e.listOrders(t, alice, "?limit=100"); st != 200 || len(p.Items) != 5 || p.NextCursor != "" {
		t.Errorf("limit=100: %d, %d items, next %q", st, len(p.Items), p.NextCursor)
	}
}

// TestOrderStatusMachineThroughTheAPI: staff walk an order through its
// life; what the state machine forbids is a 409 and changes nothing; each
// change is one order.status_changed.
func TestOrderStatusMachineThroughTheAPI(t *testing.T) {
	e := start(t)
	admin, _, alice, _ := e.cast(t)
	changed := e.domainEvents(t, "order.status_changed")
	o := e.placeOrder(t, alice, mugOrder, nil)
	for _, s := range []string{"paid", "shipped", "delivered"} {
		e.setStatus(t, admin, o.ID, s)
	}
	for _, s := range []string{"cancelled", "pending", "paid", "delivered"} {
		if st, body := e.do(t, e.public, "PATCH", "/api/v1/orders/"+o.ID, admin.token, []byte(`{"status":"`+s+`"}`), nil); st != http.StatusConflict {
			t.Errorf("delivered → %s: %d %s", s, st, body)
		}
	}
	for _, body := range []string{`{"status":"refunded"}`, `{"status":"PAID"}`, `{"status":"paid","total_cents":0}`, `{}`} {
		if st, resp := e.do(t, e.public, "PATCH", "/api/v1/orders/"+o.ID, admin.token, []byte(body), nil); st != http.StatusBadRequest {
			t.Errorf("%s: %d %s", body, st, resp)
		}
	}
	st, resp := e.do(t, e.public, "GET", "/api/v1/orders/"+o.ID, alice.token, nil, nil)
	var final orderJSON
	_ = json.Unmarshal(resp, &final)
	if st != 200 || final.Status != "delivered" || final.TotalCents != 2900 {
		t.Errorf("final %d %+v", st, final)
	}
	var path []string
	for _, ev := range changed.rest(time.Second) {
		d := dataOf(t, ev)
		path = append(path, fmt.Sprint(d["from"], "→", d["to"]))
		if d["by"] != admin.id {
			t.Errorf("by %v", d["by"])
		}
	}
	if fmt.Sprint(path) != "[pending→paid paid→shipped shipped→delivered]" {
		t.Errorf("events %v", path)
	}
}

// TestOrderCreateWithUserServiceDown: placing an order needs the customer's
// profile; with user-service down the answer is a fast 503 with
// Retry-After and nothing is written. When it is back, the same request
// (same Idempotency-Key) succeeds.
func TestOrderCreateWithUserServiceDown(t *testing.T) {
	e := start(t)
	_, _, alice, _ := e.cast(t)
	created := e.domainEvents(t, "order.created")
	key := http.Header{"Idempotency-Key": {uuid.NewString()}}
	if err := e.StopService(stack.User); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, e.Endpoints.Gateway+"/api/v1/orders", strings.NewReader(mugOrder))
		req.Header.Set("Authorization", "Bearer "+alice.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key.Get("Idempotency-Key"))
		t0 := time.Now()
		resp, err := e.public.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("user-service down: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("503 took %v", d)
		}
	}
	if st, p := e.listOrders(t, alice, ""); st != 200 || len(p.Items) != 0 {
		t.Fatalf("orders written while user-service was down: %d %d", st, len(p.Items))
	}
	if err := e.StartService(t.Context(), stack.User); err != nil {
		t.Fatal(err)
	}
	var o orderJSON
	waitFor(t, 20*time.Second, "ordering to work again", func() bool {
		st, body := e.do(t, e.public, "POST", "/api/v1/orders", alice.token, []byte(mugOrder), key)
		if st == http.StatusCreated {
			_ = json.Unmarshal(body, &o)
			return true
		}
		if st != http.StatusServiceUnavailable {
			t.Fatalf("after restart: %d %s", st, body)
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	if events := created.rest(time.Second); len(events) != 1 || events[0].Subject != o.ID {
		t.Errorf("%d order.created after the outage", len(events))
	}
}

// TestErasureAnonymisesOrdersWithOrderServiceDown: alice erases herself
// while order-service is down; when it is back it catches up from the
// stream and detaches her orders from her: no owner, no address. Staff
// still see the orders (the books), she cannot.
func TestErasureAnonymisesOrdersWithOrderServiceDown(t *testing.T) {
	e := start(t)
	admin, _, alice, bob := e.cast(t)
	if st, _ := e.do(t, e.public, "PATCH", "/api/v1/users/me", alice.token, []byte(`{"address":"2 Private Road"}`), nil); st != 200 {
		t.Fatal("set address")
	}
	a1 := e.placeOrder(t, alice, mugOrder, nil)
	a2 := e.placeOrder(t, alice, mugOrder, nil)
	b1 := e.placeOrder(t, bob, mugOrder, nil)

	if err := e.StopService(stack.Order); err != nil {
		t.Fatal(err)
	}
	if st, body := e.do(t, e.public, "DELETE", "/api/v1/users/"+alice.id, alice.token, nil, nil); st != http.StatusNoContent {
		t.Fatalf("erasure: %d %s", st, body)
	}
	if err := e.StartService(t.Context(), stack.Order); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a1.ID, a2.ID} {
		waitFor(t, 20*time.Second, "order "+id+" anonymised", func() bool {
			st, body := e.do(t, e.public, "GET", "/api/v1/orders/"+id, admin.token, nil, nil)
			var o orderJSON
			_ = json.Unmarshal(body, &o)
			return st == 200 && o.UserID == "00000000-0000-0000-0000-000000000000" && o.ShippingAddress == ""
		})
	}
	st, body := e.do(t, e.public, "GET", "/api/v1/orders/"+b1.ID, admin.token, nil, nil)
	var o orderJSON
	_ = json.Unmarshal(body, &o)
	if st != 200 || o.UserID != bob.id {
		t.Errorf("bob's order changed: %d %+v", st, o)
	}
	if st, _ := e.listOrders(t, admin, "?user_id="+alice.id); st != 200 {
		t.Errorf("staff filter on an erased user: %d", st)
	} else if _, p := e.listOrders(t, admin, "?user_id="+alice.id); len(p.Items) != 0 {
		t.Errorf("%d orders still linked to the erased user", len(p.Items))
	}
}
