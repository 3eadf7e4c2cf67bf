package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-go/rampart/shared/audit"
	"github.com/rampart-go/rampart/shared/config"
	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
)

// syncBuffer is a bytes.Buffer safe for a logger writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cli runs the command as main would, with env as the environment.
func cli(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw syncBuffer
	code = run(t.Context(), args, config.MapLookup(env), &out, &errw)
	return code, out.String(), errw.String()
}

// chain writes n security events to a fresh SQLite audit database and
// returns its URL.
func chain(t *testing.T, n int) string {
	t.Helper()
	url := "sqlite://" + filepath.Join(t.TempDir(), "audit.db")
	ctx := t.Context()
	db, err := dbx.Open(ctx, dbx.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	})
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		typ, reason := secevent.LoginFailed, secevent.ReasonBadCredentials
		if i%2 == 1 {
			typ, reason = secevent.AccessDenied, secevent.ReasonOwnership
		}
		ev, err := natsx.NewEvent(ctx, "rampart/gateway", "rampart.security."+string(typ), "alice", secevent.Data{
			Type: typ, Reason: reason, Service: "gateway", Subject: "alice", Time: time.Now().UTC().Format(time.RFC3339Nano),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.Append(ctx, db, ev); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

func tamper(t *testing.T, url, sql string) {
	t.Helper()
	db, err := dbx.Open(t.Context(), dbx.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}()
	if err := db.Exec(sql).Error; err != nil {
		t.Fatal(err)
	}
}

// TestVerifyExitCodes: 0 for an intact chain, 1 with the broken seq
// printed, 2 when the chain could not be checked at all.
func TestVerifyExitCodes(t *testing.T) {
	t.Run("intact chain: exit 0 and the head to checkpoint", func(t *testing.T) {
		url := chain(t, 4)
		code, out, errs := cli(t, map[string]string{"RAMPART_DATABASE_URL": url}, "verify")
		if code != exitOK || !strings.Contains(out, "audit chain intact: 4 entries, head 4:") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
		head := strings.TrimSpace(out[strings.Index(out, "head ")+len("head "):])
		if code, out, _ := cli(t, nil, "verify", "--db", url, "--checkpoint", head); code != exitOK {
			t.Fatalf("against its own head %s: exit %d, %q", head, code, out)
		}
		// Rows removed from the end verify on their own, not against the
		// checkpoint.
		tamper(t, url, "DELETE FROM audit_log WHERE seq > 2")
		if code, _, _ := cli(t, nil, "verify", "--db", url); code != exitOK {
			t.Fatalf("truncated chain without a checkpoint: exit %d, want 0 (the documented limit)", code)
		}
		code, out, _ = cli(t, nil, "verify", "--db", url, "--checkpoint", head)
		if code != exitBroken || !strings.Contains(out, "broken at seq 3") {
			t.Fatalf("truncated chain against checkpoint: exit %d, %q", code, out)
		}
	})
	for _, c := range []struct {
		rule, sql, want string
	}{
		{"an edited payload: exit 1 at its seq", "UPDATE audit_log SET payload = REPLACE(payload, 'alice', 'mallory') WHERE seq = 2", "broken at seq 2"},
		{"a deleted row: exit 1 at the gap", "DELETE FROM audit_log WHERE seq = 3", "broken at seq 3"},
		{"an edited column: exit 1 at its seq", "UPDATE audit_log SET type = 'auth.login.succeeded' WHERE seq = 1", "broken at seq 1"},
	} {
		t.Run(c.rule, func(t *testing.T) {
			url := chain(t, 4)
			tamper(t, url, c.sql)
			code, out, _ := cli(t, nil, "verify", "--db", url)
			if code != exitBroken || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, stdout %q; want %d and %q", code, out, exitBroken, c.want)
			}
			code, out, _ = cli(t, nil, "verify", "--db", url, "--json")
			var rep audit.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitBroken || rep.Break == nil {
				t.Fatalf("--json: exit %d, %q (%v)", code, out, err)
			}
		})
	}
	t.Run("no database, a missing file, a bad checkpoint: exit 2", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.db")
		for _, args := range [][]string{
			{"verify"},
			{"verify", "--db", "sqlite://" + missing},
			{"verify", "--db", "mysql://x"},
			{"verify", "--db", chain(t, 1), "--checkpoint", "3:zz"},
			{"frobnicate"},
			{},
		} {
			if code, out, errs := cli(t, nil, args...); code != exitError || errs == "" {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and a message", args, code, out, errs, exitError)
			}
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Errorf("verify created %s", missing)
		}
	})
}

// TestTailPrintsJSONLines: the newest matching entries, oldest first, one
// JSON object a line.
func TestTailPrintsJSONLines(t *testing.T) {
	url := chain(t, 5)
	lines := func(args ...string) []map[string]any {
		t.Helper()
		code, out, errs := cli(t, map[string]string{"RAMPART_DATABASE_URL": url}, append([]string{"tail"}, args...)...)
		if code != exitOK {
			t.Fatalf("tail %q: exit %d, %s", args, code, errs)
		}
		var got []map[string]any
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			got = append(got, m)
		}
		return got
	}
	seqs := func(ls []map[string]any) (s []float64) {
		for _, l := range ls {
			s = append(s, l["seq"].(float64))
		}
		return s
	}
	if got := seqs(lines("-n", "2")); len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Fatalf("-n 2: seqs %v, want [4 5]", got)
	}
	if got := seqs(lines("--type", "access.denied")); len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Fatalf("--type access.denied: seqs %v, want [2 4]", got)
	}
	if got := lines("--since", "1h", "--subject", "alice", "--service", "gateway"); len(got) != 5 || got[0]["event"].(map[string]any)["type"] != "rampart.security.auth.login.failed" {
		t.Fatalf("--since 1h: %v", got)
	}
	if got := lines("--since", time.Now().Add(time.Hour).Format(time.RFC3339)); len(got) != 0 {
		t.Fatalf("--since in the future: %v", got)
	}
	if code, _, _ := cli(t, nil, "tail", "--db", url, "--since", "yesterday"); code != exitError {
		t.Fatalf("bad --since: exit %d", code)
	}
}

// TestRunAppendsUntilStopped runs `audit run` against an embedded NATS
// with TLS and users, as devstack's: connection settings come from the
// RAMPART_* environment; the audit user may read streams and use the
// JetStream API only. Cancelling the context (SIGTERM) stops it with 0.
func TestRunAppendsUntilStopped(t *testing.T) {
	dir := t.TempDir()
	ca, err := mtls.EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.EnsureLeaf(dir, "nats", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	srvCert, err := mtlsPair(dir, "nats")
	if err != nil {
		t.Fatal(err)
	}
	auditPub, auditSub := natsx.OpsPermissions(nil, []string{"rampart.>"})
	svcPub, svcSub := natsx.ServicePermissions("gateway", []string{"rampart.security.gateway.>"}, nil)
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{StoreDir: t.TempDir(), TLS: srvCert, Users: []natsx.User{
		{Name: "ops", Password: "ops-pw", Publish: auditPub, Subscribe: auditSub, PublishDeny: natsx.DestructiveJetStreamAPI()},
		{Name: "gateway", Password: "gw-pw", Publish: svcPub, Subscribe: svcSub},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	url := "sqlite://" + filepath.Join(dir, "data", "audit.db")
	env := map[string]string{
		"RAMPART_NATS_URL": srv.ClientURL(), "RAMPART_TLS_CA": filepath.Join(dir, "ca.crt"),
		"RAMPART_NATS_USER": "ops", "RAMPART_NATS_PASSWORD": "ops-pw", "RAMPART_DATABASE_URL": url,
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"run", "--checkpoint-interval", "50ms"}, config.MapLookup(env), &bytes.Buffer{}, &stderr)
	}()

	// A service publishes its security events as it always does.
	pool, err := mtls.LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsx.Connect(ctx, natsx.Options{URL: srv.ClientURL(), Name: "gateway", User: "gateway", Password: "gw-pw", TLS: clientTLS(pool), InboxPrefix: natsx.InboxPrefix("gateway")})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	em, err := secevent.NewEmitter(secevent.Options{Service: "gateway", Registerer: prometheus.NewRegistry(), Sink: secevent.NewNATSSink(js)})
	if err != nil {
		t.Fatal(err)
	}
	go em.Run(ctx)
	for range 3 {
		em.Emit(ctx, secevent.Event{Type: secevent.TokenRejected, Reason: secevent.ReasonExpired, ClientIP: "192.0.2.9"})
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, _ := cli(t, nil, "verify", "--db", url)
		if code == exitOK && strings.Contains(out, "intact: 3 entries") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit run did not record 3 events: verify says %q; log:\n%s", out, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("audit run stopped with %d; log:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("audit run did not stop")
	}
	if log := stderr.String(); !strings.Contains(log, `"msg":"audit checkpoint"`) || !strings.Contains(log, `"seq":3`) {
		t.Fatalf("no checkpoint of the head logged:\n%s", log)
	}
}

// TestRunReportsEveryConfigurationProblem: one line per variable, exit 2.
func TestRunReportsEveryConfigurationProblem(t *testing.T) {
	code, _, errs := cli(t, map[string]string{"RAMPART_NATS_URL": "nats://192.0.2.1:4222", "RAMPART_NATS_USER": "ops"}, "run")
	if code != exitError {
		t.Fatalf("exit %d", code)
	}
	for _, v := range []string{"RAMPART_DATABASE_URL", "RAMPART_NATS_URL: plain-text", "RAMPART_NATS_PASSWORD"} {
		if !strings.Contains(errs, v) {
			t.Errorf("stderr does not name %s:\n%s", v, errs)
		}
	}
	// The trail's database holds every security event: reaching it off
	// loopback without a verified TLS server is as insecure as a service's.
	code, _, errs = cli(t, map[string]string{"RAMPART_NATS_URL": "nats://127.0.0.1:1", "RAMPART_DATABASE_URL": "postgres://audit@db.internal/audit?sslmode=require"}, "run")
	if code != exitError || !strings.Contains(errs, "RAMPART_DATABASE_URL: PostgreSQL to a non-loopback host without sslmode=verify-full refused") {
		t.Fatalf("PostgreSQL with sslmode=require: exit %d, %s", code, errs)
	}
	code, _, errs = cli(t, map[string]string{"RAMPART_NATS_URL": "tls://127.0.0.1:1", "RAMPART_DATABASE_URL": "sqlite://x.db"}, "run")
	if code != exitError || !strings.Contains(errs, "RAMPART_TLS_CA: required") {
		t.Fatalf("tls:// without a CA: exit %d, %s", code, errs)
	}
}

func mtlsPair(dir, name string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

func clientTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
}
