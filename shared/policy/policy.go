// Package policy decides whether a verified token may use a route: it must
// hold one of the route's roles AND every one of its scopes. (Object
// ownership, the third part of every decision, belongs to the domain
// package that knows who owns what.)
package policy

import (
	"slices"

	"github.com/rampart-go/rampart/shared/tokens"
)

// Roles.
const (
	RoleAdmin   = "ADMIN"
	RoleManager = "MANAGER"
	RoleUser    = "USER"
)

// AnyRole lists every role: routes open to any signed-in user.
func AnyRole() []string { return []string{RoleUser, RoleManager, RoleAdmin} }

// Rule is what a route requires.
type Rule struct {
	// AnyRole: the token must carry at least one (empty: no role needed).
	AnyRole []string
	// AllScopes: the token must carry every one.
	AllScopes []string
}

// Decision is the outcome; Reason is the access.denied reason on refusal.
type Decision struct {
	Allowed bool
	Reason  string // "role" or "scope"
}

// Check applies r to c: roles first, then scopes.
func Check(c *tokens.Claims, r Rule) Decision {
	if len(r.AnyRole) > 0 && !slices.ContainsFunc(r.AnyRole, c.HasRole) {
		return Decision{Reason: "role"}
	}
	for _, s := range r.AllScopes {
		if !c.HasScope(s) {
			return Decision{Reason: "scope"}
		}
	}
	return Decision{Allowed: true}
}
