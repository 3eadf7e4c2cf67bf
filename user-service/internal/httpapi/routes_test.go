package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/secevent/seceventtest"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
	"github.com/rampart-go/rampart/user-service/internal/profile"
	"github.com/rampart-go/rampart/user-service/internal/store"
)

// api is the user service's routes over a real SQLite store, with tokens
// from a test issuer.
type api struct {
	engine   *gin.Engine
	profiles *store.Store
	iss      *tokenstest.Issuer
	events   *seceventtest.Recorder
}

func newAPI(t *testing.T) *api {
	t.Helper()
	gin.SetMode(gin.TestMode)
	profiles := store.New(dbxtest.Open(t, dbxtest.SQLiteURL(t), store.Migrations), nil)
	iss := tokenstest.NewIssuer(t, "https://rampart.test", "rampart-api")
	internal := tokenstest.NewIssuer(t, "https://rampart.test", "user-service")
	a := &api{engine: gin.New(), profiles: profiles, iss: iss, events: &seceventtest.Recorder{}}
	Routes(a.engine, Deps{Profiles: profiles, Verifier: iss.Verifier(t), Internal: internal.Verifier(t), Events: a.events})
	return a
}

// person makes a profile and returns its id.
func (a *api) person(t *testing.T) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := a.profiles.CreateFromAccount(context.Background(), "test", uuid.NewString(), profile.Created{
		ID: id, Email: id[:8] + "@example.com", DisplayName: "User", CreatedAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// token signs an access token for sub with roles and scopes.
func (a *api) token(t *testing.T, sub, scope string, roles ...string) string {
	t.Helper()
	return a.iss.Sign(t, func(_, c map[string]any) {
		c["sub"], c["scope"], c["roles"] = sub, scope, roles
	})
}

func (a *api) do(t *testing.T, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	a.engine.ServeHTTP(rec, req)
	return rec
}

// TestErasingSomeoneElseIsAnAdminFunction: erasing another user's profile
// (which also disables their account and revokes their tokens) needs role
// ADMIN and scope admin, as every other admin function does (CONTRACT §2).
// An ADMIN's token issued without the admin scope — to a client the admin
// signed in to for everyday use — must not erase anyone but its holder.
// Each refusal is exactly one access.denied, and erases nothing.
func TestErasingSomeoneElseIsAnAdminFunction(t *testing.T) {
	a := newAPI(t)
	adminID := uuid.NewString()
	cases := []struct {
		name   string
		token  string
		want   int
		reason secevent.Reason
	}{
		{"admin without the admin scope", a.token(t, adminID, "users:read users:write", "ADMIN"), 403, secevent.ReasonScope},
		{"manager", a.token(t, uuid.NewString(), "users:read users:write admin", "MANAGER"), 403, secevent.ReasonRole},
		{"user", a.token(t, uuid.NewString(), "users:read users:write", "USER"), 404, secevent.ReasonOwnership},
		{"admin with the admin scope", a.token(t, adminID, "users:read users:write admin", "ADMIN"), 204, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			victim := a.person(t)
			rec := a.do(t, http.MethodDelete, "/api/v1/users/"+victim, tc.token, "")
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			got := a.events.Take()
			_, err := a.profiles.Get(context.Background(), victim)
			if tc.reason == "" {
				if len(got) != 0 || !errors.Is(err, profile.ErrNotFound) {
					t.Fatalf("events %+v, profile lookup %v: want no event and no profile", got, err)
				}
				return
			}
			if len(got) != 1 || got[0].Type != secevent.AccessDenied || got[0].Reason != tc.reason {
				t.Fatalf("events %+v, want exactly one access.denied/%s", got, tc.reason)
			}
			if err != nil {
				t.Fatalf("a refused erasure touched the profile: %v", err)
			}
		})
	}
	t.Run("self, without the admin scope", func(t *testing.T) {
		me := a.person(t)
		if rec := a.do(t, http.MethodDelete, "/api/v1/users/"+me, a.token(t, me, "users:write", "USER"), ""); rec.Code != 204 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if got := a.events.Take(); len(got) != 0 {
			t.Fatalf("events %+v", got)
		}
	})
}
