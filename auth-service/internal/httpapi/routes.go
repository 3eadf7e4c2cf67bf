// Package httpapi is the auth service's HTTP surface; routes.go lists every
// route.
package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// Deps are the handlers' collaborators.
type Deps struct {
	// JWKS serves the public signing keys.
	JWKS http.Handler
}

// Routes registers the whole API on e.
func Routes(e *gin.Engine, d Deps) {
	e.GET("/.well-known/jwks.json", gin.WrapH(d.JWKS))
	e.HEAD("/.well-known/jwks.json", gin.WrapH(d.JWKS))
}
