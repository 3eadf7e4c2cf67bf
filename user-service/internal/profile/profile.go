// Package profile holds the user service's rules about profiles: the PII a
// user keeps with us. It knows nothing of HTTP, SQL or NATS.
package profile

import (
	"errors"
	"time"
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
