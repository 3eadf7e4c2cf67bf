package profile

import "github.com/rampart-go/rampart/shared/page"

// cursors are the profile list's: keyset pages in id order
// (WHERE id > after ORDER BY id).
const cursors page.Cursor = "p1:"

// EncodeCursor makes the cursor that continues after profile id.
func EncodeCursor(id string) string { return cursors.Encode(id) }

// ParseCursor decodes a cursor made by EncodeCursor; "" is the first page.
func ParseCursor(s string) (after string, err error) { return cursors.Parse(s) }
