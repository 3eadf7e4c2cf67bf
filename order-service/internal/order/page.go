package order

import "github.com/rampart-go/rampart/shared/page"

// cursors are the order list's: keyset pages, newest first
// (WHERE id < before ORDER BY id DESC: UUIDv7 ids sort by creation time).
const cursors page.Cursor = "o1:"

// EncodeCursor makes the cursor that continues after order id.
func EncodeCursor(id string) string { return cursors.Encode(id) }

// ParseCursor decodes a cursor made by EncodeCursor; "" is the first page.
func ParseCursor(s string) (before string, err error) { return cursors.Parse(s) }
