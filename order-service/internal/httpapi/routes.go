// Package httpapi is the order service's HTTP surface: routes.go lists every
// route, the handlers translate between HTTP and the order package.
package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/rampart-go/rampart/order-service/internal/order"
	"github.com/rampart-go/rampart/shared/server"
)

// Catalog lists the catalogue.
type Catalog interface {
	ListCatalog(ctx context.Context) ([]order.CatalogItem, error)
}

// Deps are the handlers' collaborators.
type Deps struct {
	Catalog Catalog
}

// Routes registers the whole API on e.
func Routes(e *gin.Engine, d Deps) {
	h := handlers{d}
	v1 := e.Group("/api/v1")
	v1.GET("/catalog", h.listCatalog)
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
