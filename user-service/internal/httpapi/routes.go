// Package httpapi is the user service's HTTP surface; routes.go lists every
// route, the handlers translate between HTTP and the profile package.
package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/rampart-go/rampart/shared/authn"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/user-service/internal/profile"
)

// Profiles reads profiles.
type Profiles interface {
	Get(ctx context.Context, id string) (profile.Profile, error)
}

// Deps are the handlers' collaborators.
type Deps struct {
	Profiles Profiles
	Verifier authn.Verifier
	Events   authn.Emitter
}

// Every role may read its own profile; the token must carry users:read.
var readOwn = policy.Rule{AnyRole: policy.AnyRole(), AllScopes: []string{"users:read"}}

// Routes registers the whole API on e.
func Routes(e *gin.Engine, d Deps) {
	h := handlers{d}
	v1 := e.Group("/api/v1", authn.Middleware(d.Verifier, d.Events))
	v1.GET("/users/me", authn.Require(readOwn, d.Events), h.getMe)
}

type handlers struct{ Deps }

func (h handlers) getMe(c *gin.Context) {
	p, err := h.Profiles.Get(c.Request.Context(), authn.Claims(c).Subject)
	if errors.Is(err, profile.ErrNotFound) {
		server.Fail(c, problem.New(problem.NotFound, "no profile for this account yet"))
		return
	}
	if err != nil {
		server.Fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, p)
}
