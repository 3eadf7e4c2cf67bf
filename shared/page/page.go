// Package page is the one way Rampart's list routes page: opaque keyset
// cursors over UUID ids and a bounded page size (CONTRACT §2: default 20,
// at most 100). A service names its cursor with a version prefix, so a
// cursor from one list is refused by another and a later format can refuse
// old cursors cleanly instead of misreading them.
package page

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/problem"
)

// Page bounds: a client cannot ask for more than MaxLimit rows at once,
// however it phrases the request.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// maxCursorLen bounds the work spent on a cursor before it is refused.
const maxCursorLen = 64

// Cursor is a cursor format, named by its version prefix ("p1:").
type Cursor string

// Encode makes the opaque cursor that continues after id (the last row of
// a keyset page). A cursor stays valid while rows are inserted or deleted
// and costs an index seek, not an OFFSET scan.
func (c Cursor) Encode(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(c) + id))
}

// Parse decodes a cursor made by Encode; "" is the first page. Anything
// else is a 400 field error, never a query.
func (c Cursor) Parse(s string) (id string, err error) {
	if s == "" {
		return "", nil
	}
	bad := Invalid("cursor", "is not a cursor this API returned")
	if len(s) > maxCursorLen {
		return "", bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", bad
	}
	id, ok := strings.CutPrefix(string(raw), string(c))
	if !ok {
		return "", bad
	}
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return "", bad // only the canonical lower-case form we emit
	}
	return id, nil
}

// ParseLimit reads the limit parameter: empty means DefaultLimit, anything
// outside 1..MaxLimit is a field error rather than silently clamped, so a
// client learns the bound instead of wondering where its rows went.
func ParseLimit(s string) (int, error) {
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, Invalid("limit", "must be an integer from 1 to "+strconv.Itoa(MaxLimit))
	}
	return n, nil
}

// Invalid is a 400 naming one query parameter.
func Invalid(field, msg string) error {
	return &problem.Error{Code: problem.Invalid, Message: "invalid " + field, Fields: []problem.FieldError{{Field: field, Message: msg}}}
}
