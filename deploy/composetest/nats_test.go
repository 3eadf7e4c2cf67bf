package composetest

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

// startComposeNATS runs the real nats-server on deploy/compose/nats/
// nats-server.conf, its container paths mapped onto a state directory made
// by `devstack init --compose`.
func startComposeNATS(t *testing.T) (url, state string, opts *server.Options) {
	t.Helper()
	state = t.TempDir()
	if err := stack.Prepare(state, stack.PrepareOptions{Compose: true}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "compose", "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("/rampart/secrets", stack.ComposeDir(state, "nats"), `"/data"`, `"`+filepath.Join(state, "js")+`"`).Replace(string(raw))
	path := filepath.Join(state, "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err = server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the compose configuration: %v", err)
	}
	opts.Host, opts.Port, opts.HTTPPort, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, 0, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	_, hostport, _ := strings.Cut(srv.ClientURL(), "://")
	return "tls://" + hostport, state, opts
}

// TestComposeNATSPermissionsMatchStack: the users in the compose file are
// exactly deploy/stack's, with exactly its subjects.
func TestComposeNATSPermissionsMatchStack(t *testing.T) {
	_, _, opts := startComposeNATS(t)
	want := map[string][2][]string{}
	for _, name := range stack.Services {
		pub, sub := stack.NATSPermissions(name)
		want[mtls.ServiceID(name)] = [2][]string{pub, sub}
	}
	opsPub, opsSub := natsx.OpsPermissions(nil, []string{"rampart.>"})
	want[mtls.ServiceID(stack.OpsUser)] = [2][]string{opsPub, opsSub}
	if !opts.TLSMap {
		t.Error("TLS must verify client certificates and map them to users (verify_and_map)")
	}
	if len(opts.Users) != len(want) {
		t.Errorf("%d users, want %d", len(opts.Users), len(want))
	}
	for _, u := range opts.Users {
		w, ok := want[u.Username]
		if !ok {
			t.Errorf("unknown user %s", u.Username)
			continue
		}
		if u.Password != "" {
			t.Errorf("%s has a password in the file", u.Username)
		}
		p := u.Permissions
		if p == nil || p.Publish == nil || p.Subscribe == nil {
			t.Errorf("%s: no permissions", u.Username)
			continue
		}
		deny := natsx.ServicePublishDeny()
		if u.Username == mtls.ServiceID(stack.OpsUser) {
			deny = natsx.DestructiveJetStreamAPI()
		}
		if !sameSet(p.Publish.Allow, w[0]) || !sameSet(p.Subscribe.Allow, w[1]) || !sameSet(p.Publish.Deny, deny) {
			t.Errorf("%s: publish %v deny %v subscribe %v;\nwant publish %v deny %v subscribe %v (deploy/stack NATSPublish, NATSSubscribe)",
				u.Username, p.Publish.Allow, p.Publish.Deny, p.Subscribe.Allow, w[0], deny, w[1])
		}
	}
}

// TestComposeNATSMonitoringIsLoopbackOnly: the monitoring endpoints
// (/connz with every client's identity, address and subscriptions, /jsz
// with every stream and consumer, /varz) have no authentication and are
// outside the subject permissions. Only the container's own healthcheck
// needs them, so they listen on its loopback, not on the network every
// service shares.
func TestComposeNATSMonitoringIsLoopbackOnly(t *testing.T) {
	_, _, opts := startComposeNATS(t)
	if ip := net.ParseIP(opts.HTTPHost); ip == nil || !ip.IsLoopback() {
		t.Errorf("NATS monitoring listens on %q, want a loopback address", opts.HTTPHost)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestComposeNATSEnforcesLeastPrivilege connects as each service with its
// init-generated certificate and shows what it may and may not do.
func TestComposeNATSEnforcesLeastPrivilege(t *testing.T) {
	url, state, _ := startComposeNATS(t)
	connect := func(t *testing.T, who string) (*nats.Conn, chan error) {
		t.Helper()
		dir := stack.ComposeDir(state, who)
		pool, err := mtls.LoadPool(filepath.Join(dir, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 16)
		nc, err := nats.Connect(url, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"}),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
		if err != nil {
			t.Fatalf("%s cannot connect with its certificate: %v", who, err)
		}
		t.Cleanup(nc.Close)
		return nc, errs
	}
	ops, _ := connect(t, stack.OpsUser)
	tap, err := ops.SubscribeSync("rampart.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.Flush(); err != nil {
		t.Fatal(err)
	}
	denied := func(errs chan error) bool {
		select {
		case err := <-errs:
			return strings.Contains(strings.ToLower(err.Error()), "permissions violation")
		case <-time.After(2 * time.Second):
			return false
		}
	}
	delivered := func(subject string) bool {
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			m, err := tap.NextMsg(time.Until(deadline))
			if err != nil {
				return false
			}
			if m.Subject == subject {
				return true
			}
		}
		return false
	}
	tests := []struct {
		who, subject string
		allowed      bool
	}{
		{stack.Gateway, "rampart.security.gateway.token.rejected", true},
		{stack.Gateway, "rampart.revocations", false},
		{stack.Gateway, "rampart.events.order.created", false},
		{stack.Gateway, "rampart.security.auth-service.auth.login.failed", false},
		{stack.Auth, "rampart.revocations", true},
		{stack.Auth, "rampart.events.account.created", true},
		{stack.Auth, "rampart.events.order.created", false},
		{stack.User, "rampart.events.user.deleted", true},
		{stack.User, "rampart.revocations", false},
		{stack.Order, "rampart.events.order.created", true},
		{stack.Order, "rampart.events.user.deleted", false},
		{stack.Order, "rampart.security.gateway.token.rejected", false},
	}
	for _, tt := range tests {
		t.Run(tt.who+" publishes "+tt.subject, func(t *testing.T) {
			nc, errs := connect(t, tt.who)
			if err := nc.Publish(tt.subject, []byte("{}")); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
			if tt.allowed {
				if !delivered(tt.subject) {
					t.Errorf("%s could not publish %s", tt.who, tt.subject)
				}
				return
			}
			if !denied(errs) {
				t.Errorf("%s published %s without a permissions violation", tt.who, tt.subject)
			}
		})
	}
	t.Run("every service may subscribe to the revocation push channel", func(t *testing.T) {
		for _, who := range stack.Services {
			nc, errs := connect(t, who)
			if _, err := nc.SubscribeSync("rampart.revocations"); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
			if denied(errs) {
				t.Errorf("%s may not subscribe to rampart.revocations: its revocation list would wait for the KV watch", who)
			}
		}
	})
	t.Run("a service cannot subscribe to the others' streams", func(t *testing.T) {
		for _, who := range []string{stack.Gateway, stack.User, stack.Order} {
			nc, errs := connect(t, who)
			if _, err := nc.SubscribeSync("rampart.security.>"); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
			if !denied(errs) {
				t.Errorf("%s subscribed to rampart.security.>", who)
			}
		}
	})
	t.Run("nobody may delete the security stream", func(t *testing.T) {
		nc, errs := connect(t, stack.Auth)
		_ = nc.Publish("$JS.API.STREAM.DELETE."+natsx.StreamSecurity, nil)
		_ = nc.Flush()
		if !denied(errs) {
			t.Error("auth-service may publish a stream delete")
		}
	})
	t.Run("nobody may update the security stream or the revocation bucket", func(t *testing.T) {
		// A lowered limit is applied at once: an update is a purge by
		// another name (natsx.DestructiveJetStreamAPI).
		for _, stream := range []string{natsx.StreamSecurity, "KV_" + natsx.BucketRevocations} {
			nc, errs := connect(t, stack.Auth)
			_ = nc.Publish("$JS.API.STREAM.UPDATE."+stream, []byte(`{"name":"`+stream+`","max_msgs":1}`))
			_ = nc.Flush()
			if !denied(errs) {
				t.Errorf("auth-service may publish an update of %s", stream)
			}
		}
	})
	t.Run("a service can neither read the security stream nor delete the audit trail's consumer", func(t *testing.T) {
		for _, subject := range []string{
			"$JS.API.CONSUMER.DELETE." + natsx.StreamSecurity + ".audit-trail",
			"$JS.API.CONSUMER.CREATE." + natsx.StreamSecurity + ".spy",
			"$JS.API.STREAM.MSG.GET." + natsx.StreamSecurity,
			"$JS.API.STREAM.SNAPSHOT." + natsx.StreamSecurity,
			"$JS.API.STREAM.CREATE.SPY", // a stream sourcing another
		} {
			nc, errs := connect(t, stack.Gateway)
			_ = nc.Publish(subject, []byte("{}"))
			_ = nc.Flush()
			if !denied(errs) {
				t.Errorf("gateway may publish %s", subject)
			}
		}
	})
	t.Run("a client without a certificate is refused", func(t *testing.T) {
		pool, _ := mtls.LoadPool(filepath.Join(stack.ComposeDir(state, "nats"), "ca.crt"))
		nc, err := nats.Connect(url, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "localhost"}),
			nats.UserInfo(stack.Gateway, "guess"))
		if err == nil {
			nc.Close()
			t.Fatal("connected without a client certificate")
		}
	})
}
