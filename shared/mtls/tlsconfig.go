package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Reasons a client is refused at the handshake; they are the CONTRACT §4
// mtls.rejected reasons.
const (
	ReasonNoCertificate      = "no_certificate"
	ReasonUntrusted          = "untrusted"
	ReasonIdentityNotAllowed = "identity_not_allowed"
)

// RejectFunc is told about each refused client, once: the reason, the
// remote address and the identity the certificate claimed, if any.
type RejectFunc func(reason, peer, identity string)

// modernSuites are the TLS 1.2 suites we accept: ECDHE for forward secrecy,
// AEAD only. TLS 1.3 suites are not configurable and all fine.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func base(r *Reloader) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   modernSuites,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: r.GetCertificate,
	}
}

// PublicServerConfig is the gateway's public edge: server authentication
// only, modern TLS, HTTP/2.
func PublicServerConfig(r *Reloader) *tls.Config { return base(r) }

// ServerConfig requires a client certificate that chains to roots, carries a
// Rampart identity and names a service in allowed. The chain is verified in
// VerifyConnection rather than by crypto/tls itself so that each refusal
// can be told apart and reported through onReject.
//
// A caller that presents an acceptable certificate without holding its key
// is refused by crypto/tls after VerifyConnection, unseen by onReject: an
// HTTP server should use NewServer, whose ConnState reports it too.
func ServerConfig(r *Reloader, roots *x509.CertPool, allowed []string, onReject RejectFunc) *tls.Config {
	return serverConfig(r, roots, allowed, onReject, nil)
}

// Server is an mTLS HTTP listener's configuration: set Config as
// http.Server.TLSConfig and ConnState as http.Server.ConnState.
type Server struct {
	// Config is ServerConfig's.
	Config *tls.Config
	// ConnState reports, through onReject as untrusted with the identity
	// claimed, a caller whose certificate passed VerifyConnection but whose
	// handshake then failed. crypto/tls verifies the client's
	// CertificateVerify signature only after VerifyConnection, so this is
	// a caller replaying another service's certificate (public: every
	// handshake sends it) without its private key — the impersonation
	// attempt mTLS exists to stop, and otherwise the one refusal that
	// would leave no security event.
	ConnState func(net.Conn, http.ConnState)
}

// NewServer is ServerConfig plus the ConnState hook that reports callers
// failing to prove possession of their certificate's key.
func NewServer(r *Reloader, roots *x509.CertPool, allowed []string, onReject RejectFunc) *Server {
	// Connections whose certificate passed VerifyConnection, keyed by the
	// raw connection, until ConnState learns how the handshake ended.
	var pending sync.Map
	s := &Server{Config: serverConfig(r, roots, allowed, onReject, &pending)}
	s.ConnState = func(c net.Conn, state http.ConnState) {
		raw := c
		tc, isTLS := c.(*tls.Conn)
		if isTLS {
			raw = tc.NetConn()
		}
		switch state {
		case http.StateActive, http.StateHijacked:
			pending.Delete(raw)
		case http.StateClosed:
			v, ok := pending.LoadAndDelete(raw)
			if !ok || !isTLS || tc.ConnectionState().HandshakeComplete {
				return
			}
			if p, ok := v.(verifiedPeer); ok && onReject != nil {
				onReject(ReasonUntrusted, p.peer, p.identity)
			}
		}
	}
	return s
}

type verifiedPeer struct{ peer, identity string }

func serverConfig(r *Reloader, roots *x509.CertPool, allowed []string, onReject RejectFunc, pending *sync.Map) *tls.Config {
	allow := slices.Clone(allowed)
	cfg := base(r)
	cfg.ClientAuth = tls.RequestClientCert
	// VerifyConnection does not see the remote address, so a per-connection
	// config carries it into the refusal event. The top-level check stays as
	// a fail-closed guard should a caller strip GetConfigForClient.
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, _, err := verifyClient(cs, roots, allow)
		return err
	}
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := cfg.Clone()
		c.GetConfigForClient = nil
		peer := ""
		if hello.Conn != nil {
			peer = hello.Conn.RemoteAddr().String()
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			reason, identity, err := verifyClient(cs, roots, allow)
			if err == nil {
				// The key behind the certificate is proven only after
				// this returns (CertificateVerify): NewServer's ConnState
				// reports a handshake that fails from here on.
				if pending != nil && hello.Conn != nil {
					pending.Store(hello.Conn, verifiedPeer{peer: peer, identity: identity})
				}
				return nil
			}
			if onReject != nil {
				onReject(reason, peer, identity)
			}
			return err
		}
		return c, nil
	}
	return cfg
}

func verifyClient(cs tls.ConnectionState, roots *x509.CertPool, allowed []string) (reason, identity string, err error) {
	if len(cs.PeerCertificates) == 0 {
		return ReasonNoCertificate, "", errors.New("mtls: client certificate required")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return ReasonUntrusted, "", fmt.Errorf("mtls: untrusted client certificate: %w", err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return ReasonIdentityNotAllowed, "", fmt.Errorf("mtls: %w", err)
	}
	if !slices.Contains(allowed, id) {
		return ReasonIdentityNotAllowed, id, fmt.Errorf("mtls: service %q may not call this service", id)
	}
	return "", id, nil
}

// ClientConfig presents r's certificate and accepts only a server whose
// chain verifies against roots (with the usual host name check) and whose
// identity is expectServer: a service cannot impersonate another even
// though they share a CA.
func ClientConfig(r *Reloader, roots *x509.CertPool, expectServer string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		CipherSuites:         modernSuites,
		RootCAs:              roots,
		GetClientCertificate: r.GetClientCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("mtls: server presented no certificate")
			}
			id, err := IdentityOf(cs.PeerCertificates[0])
			if err != nil {
				return fmt.Errorf("mtls: server identity: %w", err)
			}
			if id != expectServer {
				return fmt.Errorf("mtls: connected to %q, expected %q", id, expectServer)
			}
			return nil
		},
	}
}

// TransportOptions tune NewTransport; zero values take the defaults.
type TransportOptions struct {
	// MaxIdleConnsPerHost sizes the pool (default 256): the standard
	// library's default of 2 makes every burst re-handshake.
	MaxIdleConnsPerHost   int
	IdleConnTimeout       time.Duration // default 90s
	TLSHandshakeTimeout   time.Duration // default 5s
	ResponseHeaderTimeout time.Duration // default 30s
}

// NewTransport returns a pooled HTTP/2-capable transport using tlsCfg. It
// never consults proxy environment variables: service-to-service traffic
// must not be diverted by the environment.
func NewTransport(tlsCfg *tls.Config, o TransportOptions) *http.Transport {
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 256
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 5 * time.Second
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 30 * time.Second
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsCfg,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          o.MaxIdleConnsPerHost * 4,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.IdleConnTimeout,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
}
