// Package route is the gateway's route table: which public paths exist,
// which service answers them and with which methods. Anything not listed is
// 404 — deny by default — and nothing under /internal/ is ever listed.
package route

import "strings"

// Route maps a path (exact, or a prefix ending in "/") to an upstream.
type Route struct {
	// Name is the bounded metric label and log field for the route.
	Name string
	// Path is matched exactly, or as a prefix when it ends in "/".
	Path string
	// Upstream is the service name that answers.
	Upstream string
	// Methods allowed; others get 405 at the edge.
	Methods []string
	// Public routes need no access token at the edge.
	Public bool
}

// Table is the public surface of Rampart (CONTRACT §2).
var Table = []Route{
	{Name: "discovery", Path: "/.well-known/", Upstream: "auth-service", Methods: []string{"GET", "HEAD"}, Public: true},
	{Name: "oauth2", Path: "/oauth2/", Upstream: "auth-service", Methods: []string{"GET", "POST"}, Public: true},
	{Name: "login", Path: "/login", Upstream: "auth-service", Methods: []string{"GET", "POST"}, Public: true},
	{Name: "register", Path: "/api/v1/auth/register", Upstream: "auth-service", Methods: []string{"POST"}, Public: true},
	{Name: "auth_admin", Path: "/api/v1/auth/", Upstream: "auth-service", Methods: []string{"GET", "PATCH", "POST"}},
	{Name: "users", Path: "/api/v1/users", Upstream: "user-service", Methods: []string{"GET"}},
	{Name: "users_item", Path: "/api/v1/users/", Upstream: "user-service", Methods: []string{"GET", "PATCH", "DELETE"}},
	{Name: "catalog", Path: "/api/v1/catalog", Upstream: "order-service", Methods: []string{"GET", "HEAD"}, Public: true},
	{Name: "orders", Path: "/api/v1/orders", Upstream: "order-service", Methods: []string{"GET", "POST"}},
	{Name: "orders_item", Path: "/api/v1/orders/", Upstream: "order-service", Methods: []string{"GET", "PATCH", "POST"}},
}

// Match returns the most specific route for an already normalised path:
// exact matches win over prefixes, longer prefixes over shorter ones.
func Match(table []Route, path string) (*Route, bool) {
	var best *Route
	for i := range table {
		r := &table[i]
		switch {
		case r.Path == path:
			return r, true
		case strings.HasSuffix(r.Path, "/") && strings.HasPrefix(path, r.Path) && len(path) > len(r.Path):
			if best == nil || len(r.Path) > len(best.Path) {
				best = r
			}
		}
	}
	return best, best != nil
}

// Allows reports whether the route accepts method.
func (r *Route) Allows(method string) bool {
	for _, m := range r.Methods {
		if m == method {
			return true
		}
	}
	return false
}
