// Package profile holds the user service's rules about profiles: the PII a
// user keeps with us, who may see or change it, and how it is erased. It
// knows nothing of HTTP, SQL or NATS.
package profile

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/tokens"
)

// Profile is one user's personal data. ID is the account id, the token's sub.
type Profile struct {
	ID          string    `json:"id"`
	Email       string    `json:"email"`
	DisplayName string    `json:"display_name"`
	Phone       string    `json:"phone"`
	Address     string    `json:"address"`
	CreatedAt   time.Time `json:"created_at"`
}

// ErrNotFound is returned when no profile has the requested id.
var ErrNotFound = errors.New("profile not found")

// ErrErased is returned when the profile's owner has been erased: nothing
// may recreate it.
var ErrErased = errors.New("profile erased")

// Patch is the only thing PATCH /users/me may change (CONTRACT §2). A nil
// field is left alone. There is no field for id, email or roles: the JSON
// decoder refuses unknown fields, so mass assignment is impossible by
// construction rather than by a deny list.
type Patch struct {
	DisplayName *string `json:"display_name"`
	Phone       *string `json:"phone"`
	Address     *string `json:"address"`
}

// phonePattern is E.164 with optional spaces or dashes between digit
// groups, as people type it: "+49 30 1234567".
var phonePattern = regexp.MustCompile(`^\+[1-9][0-9]{0,3}([ -]?[0-9]{1,6}){1,6}$`)

// Validate normalises p (trimming) and reports every problem at once.
func (p *Patch) Validate() []problem.FieldError {
	var errs []problem.FieldError
	if p.DisplayName == nil && p.Phone == nil && p.Address == nil {
		return []problem.FieldError{{Field: "body", Message: "nothing to change: send display_name, phone or address"}}
	}
	if p.DisplayName != nil {
		v := strings.TrimSpace(*p.DisplayName)
		p.DisplayName = &v
		if n := utf8.RuneCountInString(v); n < 1 || n > 100 || !printable(v, false) {
			errs = append(errs, problem.FieldError{Field: "display_name", Message: "must be 1 to 100 printable characters"})
		}
	}
	if p.Phone != nil {
		v := strings.TrimSpace(*p.Phone)
		p.Phone = &v
		if v != "" && (len(v) > 32 || !phonePattern.MatchString(v)) {
			errs = append(errs, problem.FieldError{Field: "phone", Message: `must be an international number such as "+49 30 1234567", or empty`})
		}
	}
	if p.Address != nil {
		v := strings.TrimSpace(*p.Address)
		p.Address = &v
		if utf8.RuneCountInString(v) > 500 || !printable(v, true) {
			errs = append(errs, problem.FieldError{Field: "address", Message: "must be at most 500 printable characters (line breaks allowed)"})
		}
	}
	return errs
}

// Apply returns p applied to pr. Call Validate first.
func (p Patch) Apply(pr Profile) Profile {
	if p.DisplayName != nil {
		pr.DisplayName = *p.DisplayName
	}
	if p.Phone != nil {
		pr.Phone = *p.Phone
	}
	if p.Address != nil {
		pr.Address = *p.Address
	}
	return pr
}

// printable refuses control characters (newlines only where allowed) and
// invalid UTF-8, which would otherwise end up in logs, PDFs and labels.
func printable(s string, newlines bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) && (!newlines || r != '\n')
	})
}

// CanView reports whether the token's holder may read profile id: its
// owner, or staff (MANAGER, ADMIN). The third leg of every decision after
// role and scope, which the route already checked.
func CanView(c *tokens.Claims, id string) bool {
	return c != nil && (c.Subject == id || c.HasRole(policy.RoleManager) || c.HasRole(policy.RoleAdmin))
}

// EraseOthers is what erasing someone else's profile takes: role ADMIN and
// scope admin. It also disables the account and revokes its tokens, so it is
// an admin function like those of the admin API, whose rule this is (CONTRACT
// §2: admin routes need both). users:write alone is what any client an admin
// signed in to for everyday use may hold, and must not destroy other users.
var EraseOthers = policy.Rule{AnyRole: []string{policy.RoleAdmin}, AllScopes: []string{"admin"}}

// CanErase reports whether the token's holder may erase profile id: its
// owner, or an ADMIN whose token carries the admin scope (EraseOthers). A
// MANAGER may read profiles but not destroy them.
func CanErase(c *tokens.Claims, id string) bool {
	return c != nil && (c.Subject == id || policy.Check(c, EraseOthers).Allowed)
}

// CanList reports whether the holder may list every profile.
func CanList(c *tokens.Claims) bool {
	return c != nil && slices.ContainsFunc([]string{policy.RoleManager, policy.RoleAdmin}, c.HasRole)
}

// Erasure reasons, in user.deleted.
const (
	ErasedBySelf  = "self"
	ErasedByAdmin = "admin"
)

// Deleted is the data of user.deleted: enough for every other service to
// forget the user, and nothing more (no email, no name).
type Deleted struct {
	UserID string    `json:"user_id"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Created is the part of auth-service's account.created that a profile is
// made from.
type Created struct {
	ID          string    `json:"id"`
	Email       string    `json:"email"`
	DisplayName string    `json:"display_name"`
	CreatedAt   time.Time `json:"created_at"`
}
