package oauth

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/secevent"
)

// client is an authenticated (or, for public clients, identified) client.
type client struct {
	*store.Client
	// cert is the caller's certificate for tls_client_auth clients: tokens
	// issued to it are bound to it (cnf.x5t#S256).
	cert *x509.Certificate
}

func (c *client) grants() []string          { return strings.Fields(c.GrantTypes) }
func (c *client) scopes() []string          { return strings.Fields(c.Scopes) }
func (c *client) audiences() []string       { return strings.Fields(c.Audiences) }
func (c *client) redirectURIs() []string    { return strings.Fields(c.RedirectURIs) }
func (c *client) allowsGrant(g string) bool { return slices.Contains(c.grants(), g) }

func (s *Server) lookupClient(c *gin.Context, id string) (*store.Client, error) {
	var cl store.Client
	err := s.db.WithContext(c.Request.Context()).Where("id = ?", id).Take(&cl).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	return &cl, err
}

// authenticateClient applies RFC 6749 §2.3 and RFC 8705 §2.1. Exactly one
// method may be used; the one used must be the client's registered one.
// Every failure is invalid_client (401) and one auth.client.failed event,
// and answers the same whether or not the client exists.
func (s *Server) authenticateClient(c *gin.Context, p Params) (*client, *oauthError) {
	// Two Authorization headers are two sets of credentials, and which
	// one counts would be up to each parser on the way: refused like a
	// repeated parameter (ParseValues).
	if len(c.Request.Header.Values("Authorization")) > 1 {
		return nil, errInvalidRequest("the Authorization header is repeated")
	}
	basicID, basicSecret, hasBasic, err := basicAuth(c.GetHeader("Authorization"))
	if err != nil {
		s.emit(c, secevent.ClientFailed, secevent.ReasonBadSecret, "", "")
		return nil, errInvalidClient("malformed Basic credentials")
	}
	postID, postSecret := p.Get("client_id"), p.Get("client_secret")
	_, hasPostSecret := p["client_secret"]
	if hasBasic && (hasPostSecret || (postID != "" && postID != basicID)) {
		return nil, errInvalidRequest("use one client authentication method")
	}
	id := postID
	if hasBasic {
		id = basicID
	}
	if id == "" {
		// A refusal like any other failed authentication, recorded so:
		// no client was identified.
		s.emit(c, secevent.ClientFailed, secevent.ReasonUnknownClient, "", "")
		return nil, errInvalidClient("client authentication is required")
	}
	cl, dbErr := s.lookupClient(c, id)
	if dbErr != nil {
		return nil, errServer()
	}
	fail := func(reason secevent.Reason, desc string) (*client, *oauthError) {
		s.emit(c, secevent.ClientFailed, reason, "", boundedClientID(cl, id))
		return nil, errInvalidClient(desc)
	}
	if cl == nil {
		// Same work as a wrong secret, so timing does not reveal client ids.
		subtle.ConstantTimeCompare([]byte(hash(basicSecret+postSecret)), []byte(hash("")))
		return fail(secevent.ReasonUnknownClient, "client authentication failed")
	}
	switch cl.Type {
	case store.ClientPublic:
		// A public client has no secret; an empty one (Basic "id:", as
		// many libraries send) is the same as none.
		if basicSecret != "" || postSecret != "" {
			return fail(secevent.ReasonBadSecret, "client authentication failed")
		}
		return &client{Client: cl}, nil
	case store.ClientConfidential:
		secret := postSecret
		if hasBasic {
			secret = basicSecret
		}
		if cl.SecretHash == nil || subtle.ConstantTimeCompare([]byte(hash(secret)), []byte(*cl.SecretHash)) != 1 {
			return fail(secevent.ReasonBadSecret, "client authentication failed")
		}
		return &client{Client: cl}, nil
	case store.ClientTLS:
		if hasBasic || hasPostSecret {
			return fail(secevent.ReasonBadSecret, "client authentication failed")
		}
		cert, identity, ok := peerCert(c.Request)
		if !ok || cl.TLSIdentity == nil || mtls.ServiceID(identity) != *cl.TLSIdentity {
			return fail(secevent.ReasonBadCertificate, "client authentication failed")
		}
		return &client{Client: cl, cert: cert}, nil
	}
	return fail(secevent.ReasonUnknownClient, "client authentication failed")
}

// boundedClientID keeps unknown, attacker-chosen client ids out of events:
// only registered ids are recorded.
func boundedClientID(cl *store.Client, _ string) string {
	if cl == nil {
		return ""
	}
	return cl.ID
}

// basicAuth parses client_secret_basic. RFC 6749 §2.3.1 has the id and
// secret form-urlencoded before base64, which many servers forget.
func basicAuth(h string) (id, secret string, ok bool, err error) {
	if h == "" {
		return "", "", false, nil
	}
	scheme, rest, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false, nil // another scheme: not client authentication
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false, err
	}
	u, p, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, errors.New("no colon")
	}
	if id, err = url.QueryUnescape(u); err != nil {
		return "", "", false, err
	}
	if secret, err = url.QueryUnescape(p); err != nil {
		return "", "", false, err
	}
	// The form decoding above can produce any bytes ("%00", "%ff"): hold
	// the id and secret to the rules every form parameter meets
	// (ParseValues). Unchecked, an id that is not valid UTF-8 or holds a
	// NUL reached the client lookup, where PostgreSQL refuses it as a
	// query parameter and the client got a 500 instead of invalid_client.
	for _, v := range []string{id, secret} {
		if len(v) > maxParamBytes || !utf8.ValidString(v) || hasControl(v) {
			return "", "", false, errors.New("credentials are not valid text")
		}
	}
	return id, secret, id != "", nil
}

// matchRedirect compares a requested redirect URI with the registered
// ones: exactly, character for character, except that a registered
// loopback IP-literal URI (http://127.0.0.1/… or http://[::1]/…) matches
// any port (RFC 8252 §7.3), because native apps bind an ephemeral port.
// "localhost" gets no exception (RFC 8252 §8.3). Fragments are never
// allowed (RFC 6749 §3.1.2).
func matchRedirect(registered []string, requested string) bool {
	if requested == "" || strings.Contains(requested, "#") {
		return false
	}
	if slices.Contains(registered, requested) {
		return true
	}
	req, err := url.Parse(requested)
	if err != nil || req.Scheme != "http" || !isLoopbackIP(req.Hostname()) || req.Port() == "" {
		return false
	}
	for _, r := range registered {
		reg, err := url.Parse(r)
		if err != nil || reg.Scheme != "http" || reg.Hostname() != req.Hostname() {
			continue
		}
		// Only the port may differ; rebuild the request with the
		// registered host:port and compare the whole string.
		alt := *req
		alt.Host = reg.Host
		if alt.String() == r && reg.User == nil && req.User == nil {
			return true
		}
	}
	return false
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() && (host == "127.0.0.1" || host == "::1")
}
