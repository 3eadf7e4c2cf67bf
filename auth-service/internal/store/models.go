package store

import (
	"strings"
	"time"
)

// Account is a person who can sign in.
type Account struct {
	ID           string `gorm:"primaryKey"`
	Email        string
	DisplayName  string
	PasswordHash string
	// Roles is space-separated (ADMIN, MANAGER, USER).
	Roles        string
	Disabled     bool
	FailedLogins int
	LockedUntil  *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// RoleList splits Roles.
func (a *Account) RoleList() []string { return strings.Fields(a.Roles) }

// Client is a registered OAuth client.
type Client struct {
	ID                     string `gorm:"primaryKey"`
	Name                   string
	Type                   string
	SecretHash             *string
	TLSIdentity            *string
	RedirectURIs           string `gorm:"column:redirect_uris"`
	PostLogoutRedirectURIs string `gorm:"column:post_logout_redirect_uris"`
	GrantTypes             string
	Scopes                 string
	Audiences              string
	IDTokenAlg             string
	CreatedAt              time.Time
}

// Client types.
const (
	ClientPublic       = "public"
	ClientConfidential = "confidential"
	ClientTLS          = "tls_client_auth"
)

// Session is a browser session at the authorization server.
type Session struct {
	IDHash    string `gorm:"primaryKey"`
	AccountID string
	AuthTime  time.Time
	ExpiresAt time.Time
}

// AuthRequest is an authorization request waiting for the login form.
type AuthRequest struct {
	IDHash    string `gorm:"primaryKey"`
	LoginHash string
	CSRFHash  string
	Params    string
	ExpiresAt time.Time
}

// AuthCode is an authorization code.
type AuthCode struct {
	CodeHash      string `gorm:"primaryKey"`
	ClientID      string
	AccountID     string
	RedirectURI   string
	Scope         string
	Nonce         string
	CodeChallenge string
	SessionIDHash string
	AuthTime      time.Time
	ExpiresAt     time.Time
	UsedAt        *time.Time
	FamilyID      *string
}

// TokenFamily is everything issued from one authorization.
type TokenFamily struct {
	ID            string `gorm:"primaryKey"`
	AccountID     string
	ClientID      string
	SessionIDHash string
	Scope         string
	AuthTime      time.Time
	CreatedAt     time.Time
	ExpiresAt     time.Time
	RevokedAt     *time.Time
	RevokeReason  *string
}

// RefreshToken is one refresh token of a family.
type RefreshToken struct {
	TokenHash string `gorm:"primaryKey"`
	FamilyID  string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
}

// FamilyAccessToken records an access token issued within a family.
type FamilyAccessToken struct {
	JTI       string `gorm:"primaryKey;column:jti"`
	FamilyID  string
	ExpiresAt time.Time
}
