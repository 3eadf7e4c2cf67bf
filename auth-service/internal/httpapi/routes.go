// Package httpapi is the auth service's HTTP surface; routes.go lists every
// route.
package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/auth-service/internal/account"
	"github.com/rampart-go/rampart/auth-service/internal/oauth"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/authn"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
)

// Deps are the handlers' collaborators.
type Deps struct {
	// JWKS serves the public signing keys.
	JWKS     http.Handler
	OAuth    *oauth.Server
	Accounts *account.Service
	Events   authn.Emitter
	// RotateKeys forces a signing-key rotation.
	RotateKeys func() error
}

// Routes registers the whole API on e.
func Routes(e *gin.Engine, d Deps) {
	e.GET("/.well-known/jwks.json", gin.WrapH(d.JWKS))
	e.HEAD("/.well-known/jwks.json", gin.WrapH(d.JWKS))
	d.OAuth.Routes(e)

	h := &handlers{d: d}
	e.POST("/api/v1/auth/register", h.register)

	admin := e.Group("/api/v1/auth",
		authn.Middleware(d.OAuth.Verifier(), d.Events),
		authn.Require(policy.Rule{AnyRole: []string{policy.RoleAdmin}, AllScopes: []string{"admin"}}, d.Events))
	admin.GET("/accounts", h.listAccounts)
	admin.GET("/accounts/:id", h.getAccount)
	admin.PATCH("/accounts/:id", h.patchAccount)
	admin.POST("/accounts/:id/revoke", h.revokeAccount)
	admin.POST("/keys/rotate", h.rotateKeys)
}

type handlers struct{ d Deps }

// accountView is the admin API's account representation: never the hash.
type accountView struct {
	ID          string     `json:"id"`
	Email       string     `json:"email"`
	DisplayName string     `json:"display_name"`
	Roles       []string   `json:"roles"`
	Disabled    bool       `json:"disabled"`
	LockedUntil *time.Time `json:"locked_until,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

func view(a *store.Account) accountView {
	return accountView{
		ID: a.ID, Email: a.Email, DisplayName: a.DisplayName, Roles: a.RoleList(), Disabled: a.Disabled,
		LockedUntil: a.LockedUntil, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
	}
}

// register is POST /api/v1/auth/register: new accounts get role USER.
func (h *handlers) register(c *gin.Context) {
	var in account.Registration
	if !server.BindJSON(c, &in) {
		return
	}
	a, err := h.d.Accounts.Register(c.Request.Context(), in, []string{policy.RoleUser})
	if err != nil {
		server.Fail(c, err)
		return
	}
	h.d.Events.Emit(c.Request.Context(), secevent.Event{
		Type: secevent.AccountChanged, Reason: secevent.ReasonCreated, Subject: a.ID,
		Route: c.FullPath(), RequestID: server.RequestID(c),
	})
	c.Header("Location", "/api/v1/auth/accounts/"+a.ID)
	c.JSON(http.StatusCreated, view(a))
}

// Page sizes (CONTRACT §2).
const (
	defaultLimit = 20
	maxLimit     = 100
)

func (h *handlers) listAccounts(c *gin.Context) {
	limit := defaultLimit
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			server.Fail(c, problem.New(problem.Invalid, "limit must be between 1 and 100"))
			return
		}
		limit = n
	}
	cursor := c.Query("cursor")
	if cursor != "" {
		if _, err := uuid.Parse(cursor); err != nil {
			server.Fail(c, problem.New(problem.Invalid, "cursor is not valid"))
			return
		}
	}
	rows, err := h.d.Accounts.List(c.Request.Context(), cursor, limit+1)
	if err != nil {
		server.Fail(c, err)
		return
	}
	out := gin.H{}
	if len(rows) > limit {
		rows = rows[:limit]
		out["next_cursor"] = rows[limit-1].ID
	}
	items := make([]accountView, 0, len(rows))
	for i := range rows {
		items = append(items, view(&rows[i]))
	}
	out["items"] = items
	c.JSON(http.StatusOK, out)
}

func (h *handlers) account(c *gin.Context) (*store.Account, bool) {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		server.Fail(c, problem.New(problem.NotFound, "no such account"))
		return nil, false
	}
	a, err := h.d.Accounts.Get(c.Request.Context(), id)
	if err != nil {
		server.Fail(c, err)
		return nil, false
	}
	if a == nil {
		server.Fail(c, problem.New(problem.NotFound, "no such account"))
		return nil, false
	}
	return a, true
}

func (h *handlers) getAccount(c *gin.Context) {
	if a, ok := h.account(c); ok {
		c.JSON(http.StatusOK, view(a))
	}
}

// patchAccount changes roles or the disabled flag. Disabling revokes every
// token the account holds; a role change revokes them too, so no token
// outlives the roles it was issued for.
func (h *handlers) patchAccount(c *gin.Context) {
	if _, ok := h.account(c); !ok {
		return
	}
	var ch account.Change
	if !server.BindJSON(c, &ch) {
		return
	}
	ctx := c.Request.Context()
	a, kinds, err := h.d.Accounts.Update(ctx, c.Param("id"), ch)
	if err != nil {
		server.Fail(c, err)
		return
	}
	for _, k := range kinds {
		h.d.Events.Emit(ctx, secevent.Event{
			Type: secevent.AccountChanged, Reason: k, Subject: a.ID, ClientID: authn.Claims(c).ClientID,
			Route: c.FullPath(), RequestID: server.RequestID(c),
		})
	}
	// One revocation (and one auth.token.revoked) however many of the
	// changes call for it.
	if slices.Contains(kinds, secevent.ReasonDisabled) || slices.Contains(kinds, secevent.ReasonRoles) {
		if err := h.revoke(ctx, c, a.ID); err != nil {
			server.Fail(c, err)
			return
		}
	}
	c.JSON(http.StatusOK, view(a))
}

func (h *handlers) revokeAccount(c *gin.Context) {
	a, ok := h.account(c)
	if !ok {
		return
	}
	if err := h.revoke(c.Request.Context(), c, a.ID); err != nil {
		server.Fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handlers) revoke(ctx context.Context, c *gin.Context, subject string) error {
	if err := h.d.OAuth.RevokeSubject(ctx, subject, "admin"); err != nil {
		return problem.Wrap(problem.Unavailable, "revocation could not be recorded; try again", err)
	}
	h.d.Events.Emit(ctx, secevent.Event{
		Type: secevent.TokenRevoked, Reason: secevent.ReasonAdmin, Subject: subject,
		ClientID: authn.Claims(c).ClientID, Route: c.FullPath(), RequestID: server.RequestID(c),
	})
	return nil
}

func (h *handlers) rotateKeys(c *gin.Context) {
	if err := h.d.RotateKeys(); err != nil {
		server.Fail(c, problem.Wrap(problem.Unavailable, "key rotation failed", err))
		return
	}
	c.Status(http.StatusNoContent)
}
