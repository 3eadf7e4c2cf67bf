package service

import (
	"fmt"
	"net/url"
	"time"

	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/tokens"
)

// TokenConfig is how a service finds and checks access tokens.
type TokenConfig struct {
	// JWKSURL is the auth service's key set, fetched over mTLS
	// (RAMPART_JWKS_URL, https only: a plain-HTTP key URL would let anyone
	// on the path substitute keys).
	JWKSURL *url.URL
	// Issuer must equal the token's iss (RAMPART_TOKEN_ISSUER, default the
	// public URL).
	Issuer string
	// Audience must be in the token's aud (RAMPART_TOKEN_AUDIENCE, default
	// rampart-api).
	Audience string
}

// DefaultAudience is the audience of tokens for the public API.
const DefaultAudience = "rampart-api"

// ReadTokenConfig reads the verifier settings shared by every service that
// checks tokens.
func ReadTokenConfig(r *config.Reader, c config.Common) TokenConfig {
	var tc TokenConfig
	tc.JWKSURL = r.URL("RAMPART_JWKS_URL", "", "https", "http")
	if tc.JWKSURL == nil {
		r.Fail("RAMPART_JWKS_URL", "required (https URL of the auth service's JWKS)")
	} else {
		r.Insecure("RAMPART_JWKS_URL", tc.JWKSURL.Scheme == "http", "plain-HTTP key URL")
	}
	def := ""
	if c.PublicURL != nil {
		def = c.PublicURL.String()
	}
	tc.Issuer = r.String("RAMPART_TOKEN_ISSUER", def)
	tc.Audience = r.String("RAMPART_TOKEN_AUDIENCE", DefaultAudience)
	if tc.Audience == "" {
		r.Fail("RAMPART_TOKEN_AUDIENCE", "must not be empty: audience checks cannot be turned off")
	}
	return tc
}

// Verifier builds the shared token verifier: the JWKS is fetched from the
// auth service over mTLS (this service's certificate, the auth service's
// identity checked), refreshed in the background for as long as the service
// runs, and its first successful fetch gates readiness.
func (rt *Runtime) Verifier(tc TokenConfig, revocations tokens.Revocations) (*tokens.Verifier, *tokens.JWKS, error) {
	jwks, err := tokens.NewJWKS(tokens.JWKSOptions{
		URL:    tc.JWKSURL.String(),
		Client: rt.Client("auth-service", 5*time.Second),
		Logger: rt.Log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: %w", err)
	}
	rt.AddWorker(jwks.Run)
	rt.AddCheck(ReadyCheck("jwks", jwks.Ready))
	v, err := tokens.NewVerifier(tokens.Options{
		Issuer: tc.Issuer, Audience: tc.Audience, Keys: jwks, Revocations: revocations,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("token verifier: %w", err)
	}
	return v, jwks, nil
}
