package revocation

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rampart-go/rampart/shared/natsx"
)

// servers yields the NATS URLs to test against: an embedded server always,
// and the machine's server when RAMPART_TEST_NATS_URL is set. Ids are
// random, so runs sharing the machine's bucket cannot see each other.
func servers(t *testing.T) map[string]string {
	t.Helper()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	out := map[string]string{"embedded": srv.ClientURL()}
	if u := os.Getenv("RAMPART_TEST_NATS_URL"); u != "" {
		out["external"] = u
	}
	return out
}

// open connects a fresh client and starts a list on it, as a service would.
func open(t *testing.T, url string) *List {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nc, err := natsx.Connect(ctx, natsx.Options{URL: url, Name: "revocation-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, Options{JS: js, NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	go l.Run(ctx)
	waitFor(t, "ready", l.Ready)
	return l
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRevocationPropagatesAndSurvivesRestart(t *testing.T) {
	for name, url := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			writer, reader := open(t, url), open(t, url)

			jti, sub := uuid.NewString(), uuid.NewString()
			iat := time.Now().Add(-time.Minute)
			if reader.Revoked(ctx, jti, sub, iat) {
				t.Fatal("revoked before anything was revoked")
			}
			gen := reader.Generation()
			if err := writer.RevokeToken(ctx, jti, time.Now().Add(10*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if !writer.Revoked(ctx, jti, "", iat) {
				t.Fatal("the writer does not deny its own revocation at once")
			}
			waitFor(t, "the reader to deny the jti", func() bool { return reader.Revoked(ctx, jti, "other", iat) })
			if reader.Generation() == gen {
				t.Error("generation did not move")
			}

			nb := time.Now()
			if err := writer.RevokeSubject(ctx, sub, nb); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the reader to deny the subject", func() bool { return reader.Revoked(ctx, "x", sub, iat) })
			if reader.Revoked(ctx, "y", sub, nb.Truncate(time.Second).Add(time.Second)) {
				t.Error("a token issued after the not-before second is denied")
			}
			if !reader.Revoked(ctx, "y", sub, nb.Truncate(time.Second)) {
				t.Error("a token issued in the revocation's second passes")
			}

			// A process started after the revocations loads them from KV.
			late := open(t, url)
			if !late.Revoked(ctx, jti, "", iat) || !late.Revoked(ctx, "", sub, iat) {
				t.Error("a list opened after the revocation does not deny")
			}
		})
	}
}

func TestNotBeforeNeverMovesBack(t *testing.T) {
	l := open(t, servers(t)["embedded"])
	ctx := context.Background()
	sub := uuid.NewString()
	later := time.Now().Add(time.Hour)
	if err := l.RevokeSubject(ctx, sub, later); err != nil {
		t.Fatal(err)
	}
	if err := l.RevokeSubject(ctx, sub, time.Now()); err != nil {
		t.Fatal(err)
	}
	if nb, _ := l.NotBefore(sub); !nb.Equal(later.UTC()) {
		t.Errorf("not-before moved back to %v", nb)
	}
}

func TestForeignMessagesAreIgnored(t *testing.T) {
	url := servers(t)["embedded"]
	l := open(t, url)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	gen := l.Generation()
	for _, m := range []string{``, `{}`, `{"kind":"evil","id":"x"}`, `{"kind":"jti","id":""}`, `not json`} {
		if err := nc.Publish(natsx.SubjectRevocations, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if l.Generation() != gen {
		t.Error("a malformed message changed the list")
	}
}

func TestKeysCannotCollide(t *testing.T) {
	if key(KindToken, "a.b") == key(KindToken, "a") || key(KindToken, "x") == key(KindSubject, "x") {
		t.Fatal("keys collide")
	}
	if got := key(KindSubject, "../../$JS"); got != "sub.Li4vLi4vJEpT" {
		t.Fatalf("key not encoded: %q", got)
	}
}

func BenchmarkRevoked(b *testing.B) {
	l := &List{tokens: map[string]time.Time{}, subjects: map[string]time.Time{}}
	for range 10000 {
		l.tokens[uuid.NewString()] = time.Now()
		l.subjects[uuid.NewString()] = time.Now()
	}
	ctx, iat := context.Background(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Revoked(ctx, "c5c5f0e8-4c2e-4a49-9b84-7c1e9d3f6a10", "8e2f5f8b-1b1f-4c45-8a55-0c2f4e8b9d11", iat)
	}
}

// TestNotBeforeNeverMovesBackInTheBucket: two writers revoking one subject
// at about the same time (two auth-service replicas, or two requests of
// one), the second not having seen the first's record yet. The later
// not-before must stay the bucket's, or a process that starts afterwards
// loads the earlier one and accepts the tokens issued between the two.
func TestNotBeforeNeverMovesBackInTheBucket(t *testing.T) {
	for name, url := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			first := open(t, url)
			// A writer that has not received the first one's record yet.
			nc, err := natsx.Connect(ctx, natsx.Options{URL: url, Name: "revocation-test"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			behind, err := Open(ctx, Options{JS: js, NATS: nc})
			if err != nil {
				t.Fatal(err)
			}

			sub := uuid.NewString()
			earlier := time.Now().Add(-time.Minute).Truncate(time.Second)
			later := earlier.Add(30 * time.Second)
			if err := first.RevokeSubject(ctx, sub, later); err != nil {
				t.Fatal(err)
			}
			if err := behind.RevokeSubject(ctx, sub, earlier); err != nil {
				t.Fatal(err)
			}
			late := open(t, url)
			if nb, ok := late.NotBefore(sub); !ok || !nb.Equal(later.UTC()) {
				t.Fatalf("a list started afterwards loaded not-before %v, want %v", nb, later.UTC())
			}
			if !late.Revoked(ctx, "x", sub, earlier.Add(10*time.Second)) {
				t.Fatal("a token issued between the two revocations passes")
			}
		})
	}
}

// TestSubjectRevocationDeniesFractionalIssuedAt: NumericDate allows
// fractions (RFC 7519 §2), and the verifier accepts them. A token issued
// earlier in the revocation's second is denied whatever the precision of
// its iat, not only when iat is a whole second.
func TestSubjectRevocationDeniesFractionalIssuedAt(t *testing.T) {
	l := open(t, servers(t)["embedded"])
	ctx := context.Background()
	sub := uuid.NewString()
	second := time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := l.RevokeSubject(ctx, sub, second.Add(700*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		iat    time.Time
		denied bool
	}{
		{second, true},
		{second.Add(300 * time.Millisecond), true}, // before the revocation
		{second.Add(900 * time.Millisecond), true}, // its second: erring on the safe side
		{second.Add(time.Second), false},
		{second.Add(1300 * time.Millisecond), false},
	} {
		if got := l.Revoked(ctx, "x", sub, tc.iat); got != tc.denied {
			t.Errorf("iat %s after the second: denied %v, want %v", tc.iat.Sub(second), got, tc.denied)
		}
	}
}
