package policy_test

import (
	"testing"

	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/tokens"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	user := &tokens.Claims{Roles: []string{policy.RoleUser}, Scopes: []string{"openid", "orders:read", "orders:write"}}
	admin := &tokens.Claims{Roles: []string{policy.RoleAdmin}, Scopes: []string{"admin", "users:read"}}
	manager := &tokens.Claims{Roles: []string{policy.RoleManager}, Scopes: []string{"orders:read"}}
	noRoles := &tokens.Claims{Scopes: []string{"orders:read"}}
	adminRoute := policy.Rule{AnyRole: []string{policy.RoleAdmin}, AllScopes: []string{"admin"}}
	staffRoute := policy.Rule{AnyRole: []string{policy.RoleManager, policy.RoleAdmin}, AllScopes: []string{"orders:read"}}

	tests := []struct {
		name   string
		claims *tokens.Claims
		rule   policy.Rule
		want   policy.Decision
	}{
		{name: "role and every scope allow", claims: admin, rule: adminRoute, want: policy.Decision{Allowed: true}},
		{name: "any one of the roles is enough", claims: manager, rule: staffRoute, want: policy.Decision{Allowed: true}},
		{name: "missing role denies with role", claims: user, rule: staffRoute, want: policy.Decision{Reason: policy.ReasonRole}},
		{name: "role is checked before scopes", claims: user, rule: adminRoute, want: policy.Decision{Reason: policy.ReasonRole}},
		{name: "role held but a scope missing denies with scope", want: policy.Decision{Reason: policy.ReasonScope},
			claims: &tokens.Claims{Roles: []string{policy.RoleAdmin}, Scopes: []string{"users:read"}}, rule: adminRoute},
		{name: "every scope is required, not any", claims: user, want: policy.Decision{Reason: policy.ReasonScope},
			rule: policy.Rule{AllScopes: []string{"orders:read", "admin"}}},
		{name: "scopes match exactly, not by prefix", claims: user, want: policy.Decision{Reason: policy.ReasonScope},
			rule: policy.Rule{AllScopes: []string{"orders"}}},
		{name: "roles match case-sensitively", claims: &tokens.Claims{Roles: []string{"admin"}, Scopes: []string{"admin"}},
			rule: adminRoute, want: policy.Decision{Reason: policy.ReasonRole}},
		{name: "a token without roles fails a role rule", claims: noRoles, rule: staffRoute, want: policy.Decision{Reason: policy.ReasonRole}},
		{name: "AnyRole() admits every role", claims: manager, rule: policy.Rule{AnyRole: policy.AnyRole()}, want: policy.Decision{Allowed: true}},
		{name: "AnyRole() refuses a token without roles", claims: noRoles, rule: policy.Rule{AnyRole: policy.AnyRole()}, want: policy.Decision{Reason: policy.ReasonRole}},
		{name: "empty rule admits any verified token", claims: noRoles, rule: policy.Rule{}, want: policy.Decision{Allowed: true}},
		{name: "nil claims are refused even by an empty rule", claims: nil, rule: policy.Rule{}, want: policy.Decision{Reason: policy.ReasonRole}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := policy.Check(tt.claims, tt.rule); got != tt.want {
				t.Fatalf("Check = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAnyRoleReturnsAFreshSlice(t *testing.T) {
	t.Parallel()
	a := policy.AnyRole()
	a[0] = "HACKED"
	if policy.AnyRole()[0] == "HACKED" {
		t.Fatal("AnyRole shares its backing array: one route could widen another")
	}
}
