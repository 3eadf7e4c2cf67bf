// Package revocation is the deny-list every token verifier consults: revoked
// token ids (jti) and per-subject "not before" times.
//
// The durable record is the JetStream KV bucket rampart_revocations, whose
// TTL is the longest access-token lifetime: once that has passed, a revoked
// token has expired anyway. Each process keeps the whole list in memory,
// loaded from the bucket at start and kept current by a KV watch (which
// resumes by itself after a reconnect) and by plain messages on
// rampart.revocations, which arrive a little sooner than the KV update. A
// lookup is two map reads under a read lock, cheap enough for every request.
package revocation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rampart-go/rampart/shared/natsx"
)

// Kinds of revocation record.
const (
	KindToken   = "jti"
	KindSubject = "sub"
)

// Record is one revocation, as stored in the bucket and published on
// rampart.revocations. At is the token's expiry for KindToken (after which
// the record is useless) and the not-before time for KindSubject.
type Record struct {
	Kind string    `json:"kind"`
	ID   string    `json:"id"`
	At   time.Time `json:"at"`
}

// List is the in-memory deny-list. Its zero value is not usable; use Open.
type List struct {
	js  jetstream.JetStream
	nc  *nats.Conn
	kv  jetstream.KeyValue
	log *slog.Logger
	now func() time.Time

	mu       sync.RWMutex
	tokens   map[string]time.Time // jti → token expiry
	subjects map[string]time.Time // sub → not before

	gen   atomic.Uint64
	ready atomic.Bool
}

// Options configure Open.
type Options struct {
	JS     jetstream.JetStream
	NATS   *nats.Conn
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Open binds the bucket (which natsx.EnsureStreams creates). The list is
// empty and not Ready until Run has loaded the bucket.
func Open(ctx context.Context, o Options) (*List, error) {
	if o.JS == nil || o.NATS == nil {
		return nil, errors.New("revocation: JetStream and NATS connection are required")
	}
	kv, err := o.JS.KeyValue(ctx, natsx.BucketRevocations)
	if err != nil {
		return nil, fmt.Errorf("revocation: bucket %s: %w", natsx.BucketRevocations, err)
	}
	l := &List{
		js: o.JS, nc: o.NATS, kv: kv, log: o.Logger, now: o.Now,
		tokens: map[string]time.Time{}, subjects: map[string]time.Time{},
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// Revoked implements tokens.Revocations. A subject-wide revocation at time T
// denies every token whose iat is not after T. iat has one-second
// resolution, so a token minted in the same second as the revocation is
// denied too: erring that way never lets a token issued before the
// revocation through. (The auth service waits out that second before it
// issues a new token to a revoked subject.) The comparison is on iat's
// second, not T's: NumericDate allows fractions, and comparing a
// fractional iat with T rounded down let a token issued earlier in T's
// second through.
func (l *List) Revoked(_ context.Context, jti, subject string, issuedAt time.Time) bool {
	l.mu.RLock()
	_, tok := l.tokens[jti]
	nb, sub := l.subjects[subject]
	l.mu.RUnlock()
	if tok && jti != "" {
		return true
	}
	return sub && subject != "" && !issuedAt.Truncate(time.Second).After(nb)
}

// NotBefore returns the subject's not-before time, if it has one.
func (l *List) NotBefore(subject string) (time.Time, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	nb, ok := l.subjects[subject]
	return nb, ok
}

// Ready reports whether the bucket has been loaded: until then a revoked
// token could pass, so services gate readiness on it.
func (l *List) Ready() bool { return l.ready.Load() }

// Generation increments whenever a record is applied; caches of verified
// tokens may compare it to know the list changed.
func (l *List) Generation() uint64 { return l.gen.Load() }

// RevokeToken denies one access token until it expires.
func (l *List) RevokeToken(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return errors.New("revocation: empty jti")
	}
	return l.put(ctx, Record{Kind: KindToken, ID: jti, At: exp.UTC()})
}

// RevokeSubject denies every token of subject issued at or before notBefore.
func (l *List) RevokeSubject(ctx context.Context, subject string, notBefore time.Time) error {
	if subject == "" {
		return errors.New("revocation: empty subject")
	}
	return l.put(ctx, Record{Kind: KindSubject, ID: subject, At: notBefore.UTC()})
}

// put writes the durable record first (so a process starting later still
// denies), applies it locally, then publishes the fast notification.
func (l *List) put(ctx context.Context, r Record) error {
	if r.Kind == KindSubject {
		// Never move a not-before time backwards, here or in the bucket.
		if cur, ok := l.NotBefore(r.ID); ok && cur.After(r.At) {
			r.At = cur
		}
		var err error
		if r, err = l.storeSubject(ctx, r); err != nil {
			return err
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if r.Kind != KindSubject {
		if _, err := l.kv.Put(ctx, key(r.Kind, r.ID), b); err != nil {
			return fmt.Errorf("revocation: store: %w", err)
		}
	}
	l.apply(r)
	if err := l.nc.Publish(natsx.SubjectRevocations, b); err != nil {
		// The KV watch delivers it anyway; the message only saves latency.
		l.log.Warn("revocation notify failed", slog.Any("error", err))
	}
	return nil
}

// storeSubject writes a subject's not-before time with compare-and-set and
// returns the record now stored. The local list is not enough to keep the
// time from moving back: a writer that has not yet received another's
// later record (another replica, or a concurrent request) would overwrite
// it with its earlier time, and a process starting afterwards would load
// that and accept the tokens issued in between.
func (l *List) storeSubject(ctx context.Context, r Record) (Record, error) {
	k := key(r.Kind, r.ID)
	for range 16 {
		var rev uint64
		e, err := l.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return r, fmt.Errorf("revocation: store: %w", err)
		default:
			rev = e.Revision()
			if cur, ok := decode(e.Value()); ok && cur.Kind == r.Kind && !cur.At.Before(r.At) {
				r.At = cur.At
				return r, nil // the bucket already holds this time or a later one
			}
		}
		b, err := json.Marshal(r)
		if err != nil {
			return r, err
		}
		if rev == 0 {
			_, err = l.kv.Create(ctx, k, b)
		} else {
			_, err = l.kv.Update(ctx, k, b, rev)
		}
		switch {
		case err == nil:
			return r, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another writer got in first: read its record again
		default:
			return r, fmt.Errorf("revocation: store: %w", err)
		}
	}
	return r, errors.New("revocation: store: subject record kept changing")
}

// key maps a record to a KV key. Ids are base64url-encoded so any string is
// a valid key and no id can address another record.
func key(kind, id string) string {
	return kind + "." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

func (l *List) apply(r Record) {
	l.mu.Lock()
	switch r.Kind {
	case KindToken:
		l.tokens[r.ID] = r.At
	case KindSubject:
		if cur, ok := l.subjects[r.ID]; !ok || r.At.After(cur) {
			l.subjects[r.ID] = r.At
		}
	default:
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.gen.Add(1)
}

// Run loads the bucket and follows it and the notification subject until
// ctx ends. It also drops expired token records now and then, so the map
// stays as small as the bucket.
func (l *List) Run(ctx context.Context) {
	sub, err := l.nc.Subscribe(natsx.SubjectRevocations, func(m *nats.Msg) {
		if r, ok := decode(m.Data); ok {
			l.apply(r)
		}
	})
	if err != nil {
		l.log.Error("revocation subscribe failed", slog.Any("error", err))
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	for ctx.Err() == nil {
		if err := l.watch(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("revocation watch ended; restarting", slog.Any("error", err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (l *List) watch(ctx context.Context) error {
	w, err := l.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			l.sweep()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil { // end of the initial values
				l.ready.Store(true)
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue // deletes and purges only come from TTL expiry
			}
			if r, ok := decode(e.Value()); ok && strings.HasPrefix(e.Key(), r.Kind+".") {
				l.apply(r)
			}
		}
	}
}

// sweep drops token records whose token has expired and subject records
// older than the bucket's TTL (every token they could deny has expired).
func (l *List) sweep() {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for jti, exp := range l.tokens {
		if now.After(exp.Add(time.Minute)) {
			delete(l.tokens, jti)
		}
	}
	for sub, nb := range l.subjects {
		if now.Sub(nb) > natsx.RevocationTTL+time.Minute {
			delete(l.subjects, sub)
		}
	}
}

func decode(b []byte) (Record, bool) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil || r.ID == "" || (r.Kind != KindToken && r.Kind != KindSubject) {
		return Record{}, false
	}
	return r, true
}

// String is for logs: the kind and when, never anything else.
func (r Record) String() string {
	return r.Kind + "@" + strconv.FormatInt(r.At.Unix(), 10)
}
