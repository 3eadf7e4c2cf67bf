// Package mtls is service identity for Rampart: every service holds a
// short-lived X.509 certificate whose URI SAN is its SPIFFE-style id
// (spiffe://rampart.local/service/<name>); servers require a client
// certificate from the Rampart CA and check the caller's id against an
// allowlist; clients check that the server is the service they meant to
// call. Certificates reload from their files without a restart.
package mtls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// TrustDomain is the SPIFFE trust domain of every Rampart identity.
const TrustDomain = "rampart.local"

const idPrefix = "spiffe://" + TrustDomain + "/service/"

// ServiceID returns the SPIFFE id of service name.
func ServiceID(name string) string { return idPrefix + name }

// IdentityOf returns the service name in cert's single Rampart URI SAN. A
// certificate with no such SAN, several, or one from another trust domain
// has no identity here.
func IdentityOf(cert *x509.Certificate) (string, error) {
	var name string
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		s := u.String()
		if !strings.HasPrefix(s, idPrefix) {
			return "", fmt.Errorf("identity %q is outside trust domain %s", s, TrustDomain)
		}
		if name != "" {
			return "", errors.New("certificate carries more than one SPIFFE id")
		}
		name = strings.TrimPrefix(s, idPrefix)
		if name == "" || strings.ContainsAny(name, "/?#") {
			return "", fmt.Errorf("malformed service identity %q", s)
		}
	}
	if name == "" {
		return "", errors.New("certificate carries no SPIFFE id")
	}
	return name, nil
}

// PeerIdentity returns the verified caller's service name, from the first
// peer certificate of r's TLS connection.
func PeerIdentity(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	name, err := IdentityOf(r.TLS.PeerCertificates[0])
	return name, err == nil
}

// Thumbprint is the RFC 8705 x5t#S256 of cert: base64url(SHA-256(DER)),
// unpadded. Tokens bound to a certificate carry it in cnf.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
