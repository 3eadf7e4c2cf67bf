package order

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/problem"
)

// Page bounds (CONTRACT §2): a client cannot ask for more than MaxLimit
// rows at once, however it phrases the request.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// cursorPrefix versions the cursor format, so a future change can refuse
// old cursors cleanly instead of misreading them.
const cursorPrefix = "o1:"

// maxCursorLen bounds the work spent on a cursor before it is refused.
const maxCursorLen = 64

// EncodeCursor makes the opaque cursor that continues after id. Pages are
// keyset pages, newest first (WHERE id < after ORDER BY id DESC: UUIDv7
// ids sort by creation time), so a cursor stays valid while orders are
// placed or anonymised and costs an index seek, not an OFFSET scan.
func EncodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

// ParseCursor decodes a cursor made by EncodeCursor; "" is the first page.
// Anything else is a field error, never a query.
func ParseCursor(s string) (after string, err error) {
	if s == "" {
		return "", nil
	}
	bad := invalid("cursor", "is not a cursor this API returned")
	if len(s) > maxCursorLen {
		return "", bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", bad
	}
	id, ok := strings.CutPrefix(string(raw), cursorPrefix)
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
		return 0, invalid("limit", "must be an integer from 1 to "+strconv.Itoa(MaxLimit))
	}
	return n, nil
}

// invalid is a 400 naming one query parameter.
func invalid(field, msg string) error {
	return &problem.Error{Code: problem.Invalid, Message: "invalid " + field, Fields: []problem.FieldError{{Field: field, Message: msg}}}
}
