// Package httpapi is the user service's HTTP surface; routes.go lists every
// route with who may call it, the handlers translate between HTTP and the
// profile package.
package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/authn"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/page"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/tokens"
	"github.com/rampart-go/rampart/user-service/internal/profile"
)

// Profiles is the profile store.
type Profiles interface {
	Get(ctx context.Context, id string) (profile.Profile, error)
	List(ctx context.Context, after string, limit int) ([]profile.Profile, string, error)
	Update(ctx context.Context, id string, p profile.Patch) (profile.Profile, error)
	Erase(ctx context.Context, id, reason string) error
}

// Deps are the handlers' collaborators.
type Deps struct {
	Profiles Profiles
	// Verifier checks public API tokens (aud rampart-api), which reach us
	// through the gateway.
	Verifier authn.Verifier
	// Internal checks service tokens (aud user-service) on /internal.
	Internal authn.Verifier
	Events   authn.Emitter
}

// InternalCaller is the one service that may use /internal/v1/users: the
// listener admits the gateway too, and this route must not be reachable
// with the gateway's identity.
const InternalCaller = "order-service"

// The rules of each route: roles ∧ scopes here, ownership in the handler.
var (
	readProfile  = policy.Rule{AnyRole: policy.AnyRole(), AllScopes: []string{"users:read"}}
	writeProfile = policy.Rule{AnyRole: policy.AnyRole(), AllScopes: []string{"users:write"}}
	listProfiles = policy.Rule{AnyRole: []string{policy.RoleManager, policy.RoleAdmin}, AllScopes: []string{"users:read"}}
	// internalRead needs no role: a service acting for itself has none,
	// and one acting for a user carries the user's, checked per object.
	internalRead = policy.Rule{AllScopes: []string{"users:read"}}
)

// Routes registers the whole API on e.
func Routes(e *gin.Engine, d Deps) {
	h := handlers{d}
	v1 := e.Group("/api/v1", authn.Middleware(d.Verifier, d.Events))
	v1.GET("/users/me", authn.Require(readProfile, d.Events), h.getMe)
	v1.PATCH("/users/me", authn.Require(writeProfile, d.Events), h.patchMe)
	v1.GET("/users", authn.Require(listProfiles, d.Events), h.list)
	v1.GET("/users/:id", authn.Require(readProfile, d.Events), h.get)
	v1.DELETE("/users/:id", authn.Require(writeProfile, d.Events), h.erase)

	// Service to service: the caller's certificate must be order-service's,
	// and its token must be for us, bound to that certificate (RFC 8705).
	in := e.Group("/internal/v1",
		authn.RequirePeer(d.Events, InternalCaller),
		authn.Middleware(d.Internal, d.Events),
		authn.RequireBinding(d.Events))
	in.GET("/users/:id", authn.Require(internalRead, d.Events), h.getInternal)
}

type handlers struct{ Deps }

type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (h handlers) getMe(c *gin.Context) {
	h.respond(c, authn.Claims(c).Subject)
}

func (h handlers) patchMe(c *gin.Context) {
	var p profile.Patch
	if !server.BindJSON(c, &p) {
		return
	}
	if errs := p.Validate(); len(errs) > 0 {
		server.Fail(c, &problem.Error{Code: problem.Invalid, Message: "the profile change is invalid", Fields: errs})
		return
	}
	out, err := h.Profiles.Update(c.Request.Context(), authn.Claims(c).Subject, p)
	if errors.Is(err, profile.ErrNotFound) {
		server.Fail(c, problem.New(problem.NotFound, "no profile for this account yet"))
		return
	}
	if err != nil {
		server.Fail(c, err)
		return
	}
	noStore(c)
	c.JSON(http.StatusOK, out)
}

func (h handlers) list(c *gin.Context) {
	after, err := profile.ParseCursor(c.Query("cursor"))
	if err != nil {
		server.Fail(c, err)
		return
	}
	limit, err := page.ParseLimit(c.Query("limit"))
	if err != nil {
		server.Fail(c, err)
		return
	}
	items, next, err := h.Profiles.List(c.Request.Context(), after, limit)
	if err != nil {
		server.Fail(c, err)
		return
	}
	out := list[profile.Profile]{Items: items}
	if next != "" {
		out.NextCursor = profile.EncodeCursor(next)
	}
	noStore(c)
	c.JSON(http.StatusOK, out)
}

// get is GET /users/{id}: the owner or staff. Anyone else is told the
// profile does not exist, whether it does or not, so ids cannot be probed.
func (h handlers) get(c *gin.Context) {
	id, ok := h.objectID(c)
	if !ok {
		return
	}
	if !profile.CanView(authn.Claims(c), id) {
		authn.Deny(c, h.Events, secevent.ReasonOwnership)
		return
	}
	h.respond(c, id)
}

// erase is DELETE /users/{id}: the owner, or an ADMIN with the admin
// scope, starts the erasure saga. Staff who may see the profile are told
// 403 (role for a MANAGER, scope for an ADMIN token without admin); anyone
// who may not even see it is told 404.
func (h handlers) erase(c *gin.Context) {
	id, ok := h.objectID(c)
	if !ok {
		return
	}
	claims := authn.Claims(c)
	if !profile.CanErase(claims, id) {
		if profile.CanView(claims, id) {
			authn.Deny(c, h.Events, secevent.Reason(policy.Check(claims, profile.EraseOthers).Reason))
		} else {
			authn.Deny(c, h.Events, secevent.ReasonOwnership)
		}
		return
	}
	reason := profile.ErasedBySelf
	if claims.Subject != id {
		// Staff erasing someone else must find them first: erasing a
		// random id would only litter the erasure list.
		if _, err := h.Profiles.Get(c.Request.Context(), id); err != nil {
			h.notFound(c, err)
			return
		}
		reason = profile.ErasedByAdmin
	}
	if err := h.Profiles.Erase(c.Request.Context(), id, reason); err != nil {
		server.Fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// getInternal serves another service. A token-exchange token carries the
// user (sub) and the calling service (act): the user must be allowed to
// see the profile, exactly as if they had asked themselves. A service's own
// client_credentials token has the service as sub and no act.
func (h handlers) getInternal(c *gin.Context) {
	id, ok := h.objectID(c)
	if !ok {
		return
	}
	claims := authn.Claims(c)
	peer, _ := mtls.PeerIdentity(c.Request)
	if !actingFor(claims, peer, id) {
		authn.Deny(c, h.Events, secevent.ReasonOwnership)
		return
	}
	h.respond(c, id)
}

// actingFor decides the object-level rule of the internal route.
func actingFor(c *tokens.Claims, peer, id string) bool {
	if c.Actor != "" {
		// Delegated: the actor named in the token is the certificate we
		// see (the binding already proved the token was issued to it).
		return c.Actor == mtls.ServiceID(peer) && profile.CanView(c, id)
	}
	return c.Subject == peer
}

// objectID reads the :id parameter. Ids are UUIDs: anything else cannot
// name a profile and gets a plain 404.
func (h handlers) objectID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		server.Fail(c, problem.New(problem.NotFound, "no such resource"))
		return "", false
	}
	return id, true
}

func (h handlers) respond(c *gin.Context, id string) {
	p, err := h.Profiles.Get(c.Request.Context(), id)
	if err != nil {
		h.notFound(c, err)
		return
	}
	noStore(c)
	c.JSON(http.StatusOK, p)
}

func (h handlers) notFound(c *gin.Context, err error) {
	if errors.Is(err, profile.ErrNotFound) {
		server.Fail(c, problem.New(problem.NotFound, "no such resource"))
		return
	}
	server.Fail(c, err)
}

// noStore keeps PII out of shared caches.
func noStore(c *gin.Context) { c.Header("Cache-Control", "no-store") }
