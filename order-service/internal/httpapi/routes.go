// Package httpapi is the order service's HTTP surface: routes.go lists every
// route with who may call it, the handlers translate between HTTP and the
// order package.
package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/rampart-go/rampart/order-service/internal/order"
	"github.com/rampart-go/rampart/order-service/internal/store"
	"github.com/rampart-go/rampart/order-service/internal/userclient"
	"github.com/rampart-go/rampart/shared/authn"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/server"
)

// Catalog lists the catalogue.
type Catalog interface {
	ListCatalog(ctx context.Context) ([]order.CatalogItem, error)
}

// Orders is the order store.
type Orders interface {
	Prices(ctx context.Context, skus []string) (map[string]order.CatalogItem, error)
	Replay(ctx context.Context, userID string, idem store.Idempotency) (order.Order, bool, error)
	Create(ctx context.Context, o order.Order, idem store.Idempotency) (order.Order, bool, error)
	Get(ctx context.Context, id string) (order.Order, error)
	List(ctx context.Context, userID, before string, limit int) ([]order.Order, string, error)
	Transition(ctx context.Context, id, by string, decide store.Decide) (order.Order, error)
}

// Customers confirms a customer exists and returns their shipping address,
// acting for the user whose token is subjectToken.
type Customers interface {
	Customer(ctx context.Context, subjectToken, userID string) (userclient.Customer, error)
}

// Deps are the handlers' collaborators.
type Deps struct {
	Catalog   Catalog
	Orders    Orders
	Customers Customers
	// Verifier checks public API tokens (aud rampart-api).
	Verifier authn.Verifier
	Events   authn.Emitter
}

// The rules of each route: roles ∧ scopes here, ownership in the handler.
// Placing an order needs users:read too: it reads the customer's profile
// (for the shipping address) on the customer's behalf.
var (
	createOrder = policy.Rule{AnyRole: policy.AnyRole(), AllScopes: []string{"orders:write", "users:read"}}
	readOrders  = policy.Rule{AnyRole: policy.AnyRole(), AllScopes: []string{"orders:read"}}
	cancelOrder = policy.Rule{AnyRole: policy.AnyRole(), AllScopes: []string{"orders:write"}}
	manageOrder = policy.Rule{AnyRole: []string{policy.RoleManager, policy.RoleAdmin}, AllScopes: []string{"orders:write"}}
)

// Routes registers the whole API on e.
func Routes(e *gin.Engine, d Deps) {
	h := handlers{d}
	e.GET("/api/v1/catalog", h.listCatalog)

	v1 := e.Group("/api/v1", authn.Middleware(d.Verifier, d.Events))
	v1.POST("/orders", authn.Require(createOrder, d.Events), h.create)
	v1.GET("/orders", authn.Require(readOrders, d.Events), h.list)
	v1.GET("/orders/:id", authn.Require(readOrders, d.Events), h.get)
	v1.POST("/orders/:id/cancel", authn.Require(cancelOrder, d.Events), h.cancel)
	v1.PATCH("/orders/:id", authn.Require(manageOrder, d.Events), h.patch)
}

type handlers struct{ Deps }

type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (h handlers) listCatalog(c *gin.Context) {
	items, err := h.Catalog.ListCatalog(c.Request.Context())
	if err != nil {
		server.Fail(c, err)
		return
	}
	c.Header("Cache-Control", "public, max-age=60")
	c.JSON(http.StatusOK, list[order.CatalogItem]{Items: items})
}
