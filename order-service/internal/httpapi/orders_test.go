package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/order-service/internal/store"
	"github.com/rampart-go/rampart/order-service/internal/userclient"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/secevent/seceventtest"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

// The whole stack (gateway, token exchange, user-service) is exercised in
// deploy/e2e/orders_test.go. Here the routes run over a real SQLite store
// with tokens from a test issuer, and user-service is a stand-in whose
// answer each test chooses, so each failure mode can be produced on demand.

// customers stands in for user-service: every customer exists with an
// address, unless err is set.
type customers struct {
	mu  sync.Mutex
	err error
}

func (c *customers) Customer(_ context.Context, _, userID string) (userclient.Customer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return userclient.Customer{}, c.err
	}
	return userclient.Customer{ID: userID, Address: "1 Main St"}, nil
}

type api struct {
	engine    *gin.Engine
	orders    *store.Store
	customers *customers
	iss       *tokenstest.Issuer
	events    *seceventtest.Recorder
}

func newAPI(t *testing.T) *api {
	t.Helper()
	gin.SetMode(gin.TestMode)
	orders := store.New(dbxtest.Open(t, dbxtest.SQLiteURL(t), store.Migrations), nil)
	a := &api{
		engine: gin.New(), orders: orders, customers: &customers{},
		iss: tokenstest.NewIssuer(t, "https://rampart.test", "rampart-api"), events: &seceventtest.Recorder{},
	}
	Routes(a.engine, Deps{Catalog: orders, Orders: orders, Customers: a.customers, Verifier: a.iss.Verifier(t), Events: a.events})
	return a
}

// token signs an access token for sub with roles and scopes.
func (a *api) token(t *testing.T, sub, scope string, roles ...string) string {
	t.Helper()
	return a.iss.Sign(t, func(_, c map[string]any) {
		c["sub"], c["scope"], c["roles"] = sub, scope, roles
	})
}

func (a *api) do(t *testing.T, method, path, token, body string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	a.engine.ServeHTTP(rec, req)
	return rec
}

const customerScopes = "orders:read orders:write users:read"

const mugOrder = `{"items":[{"sku":"RMP-MUG","quantity":2}]}`

// TestTokenRefusedByTheExchangeIsTheContractsOne401: a token the gateway
// and this service accepted but the authorization server then refuses to
// exchange (revoked in between) is a rejected token like any other
// (CONTRACT §2): 401 with WWW-Authenticate error="invalid_token" and the
// same body as every rejected token, so the client's OAuth library
// refreshes instead of failing, and the answer tells it nothing about why.
// Nothing is written.
func TestTokenRefusedByTheExchangeIsTheContractsOne401(t *testing.T) {
	a := newAPI(t)
	a.customers.err = userclient.ErrRefused
	me := uuid.NewString()
	rec := a.do(t, http.MethodPost, "/api/v1/orders", a.token(t, me, customerScopes, "USER"), mugOrder, nil)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="rampart", error="invalid_token"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	// The body every other rejected token gets, from authn.Middleware.
	forged := a.do(t, http.MethodPost, "/api/v1/orders", a.token(t, me, customerScopes, "USER")+"x", mugOrder, nil)
	a.events.Take()
	if detail(t, rec.Body.String()) != detail(t, forged.Body.String()) {
		t.Errorf("body %s\nwant the detail of %s", rec.Body, forged.Body)
	}
	if items, _, err := a.orders.List(context.Background(), me, "", 10); err != nil || len(items) != 0 {
		t.Errorf("%d orders written, %v", len(items), err)
	}
}

// detail picks the problem's detail out of a body.
func detail(t *testing.T, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `"detail":"`)
	if !ok {
		t.Fatalf("no detail in %s", body)
	}
	d, _, _ := strings.Cut(rest, `"`)
	return d
}

// TestOrderForAnErasedCustomerIsRefused: when user-service still confirmed
// the customer but their erasure reached us before the order was stored,
// the answer is the one for a customer without a profile (422), not a 500,
// and no order is stored.
func TestOrderForAnErasedCustomerIsRefused(t *testing.T) {
	a := newAPI(t)
	gone := uuid.NewString()
	if _, err := a.orders.Anonymise(context.Background(), "test", uuid.NewString(), gone); err != nil {
		t.Fatal(err)
	}
	rec := a.do(t, http.MethodPost, "/api/v1/orders", a.token(t, gone, customerScopes, "USER"), mugOrder, nil)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if items, _, err := a.orders.List(context.Background(), gone, "", 10); err != nil || len(items) != 0 {
		t.Errorf("%d orders written, %v", len(items), err)
	}
}
