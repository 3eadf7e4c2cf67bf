// Package natsx holds Rampart's NATS conventions: how services connect
// (TLS, credentials, reconnect forever), the streams and KV bucket every
// service may rely on, CloudEvents envelopes, W3C trace context in message
// headers both ways, and an embedded server for devstack and tests.
package natsx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream, bucket and subject names (CONTRACT §4).
const (
	StreamEvents          = "RAMPART_EVENTS"
	StreamSecurity        = "RAMPART_SECURITY"
	BucketRevocations     = "rampart_revocations"
	SubjectRevocations    = "rampart.revocations"
	SubjectEventsPrefix   = "rampart.events."
	SubjectSecurityPrefix = "rampart.security."
)

// Options configure Connect.
type Options struct {
	URL  string
	Name string // the client name: the service's name
	// TLS, when set, is used for the connection (tls:// URLs).
	TLS            *tls.Config
	User, Password string
	// InboxPrefix, when set, replaces _INBOX as the prefix of reply
	// subjects: services use InboxPrefix(name), the only inbox their NATS
	// permissions let them subscribe to (ServicePermissions).
	InboxPrefix string
	Logger      *slog.Logger
}

// Connect dials NATS and keeps reconnecting for as long as the process
// lives: a service that lost NATS must catch up when it returns, never give
// up. The first connection must succeed before ctx ends.
func Connect(ctx context.Context, o Options) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// Bounded: what is published while disconnected is buffered up to
		// this size; beyond it publishing fails fast instead of growing.
		nats.ReconnectBufSize(8 << 20),
		nats.Timeout(5 * time.Second),
		nats.PingInterval(20 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", slog.Any("error", err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", slog.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats error", slog.String("subject", subj), slog.Any("error", err))
		}),
	}
	if o.TLS != nil {
		opts = append(opts, nats.Secure(o.TLS))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	// nats.Connect does not take a context; retry until it succeeds or ctx
	// ends, since devstack and compose start NATS and services together.
	for {
		nc, err := nats.Connect(o.URL, opts...)
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, nats.ErrAuthorization) {
			return nil, fmt.Errorf("nats %s: %w", o.URL, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nats %s: %w (last error: %w)", o.URL, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Retention, on purpose:
//   - domain events are replayable for a week: long enough for a consumer
//     that was down over a weekend to catch up, short enough that the
//     stream is not an accidental archive of PII-bearing events;
//   - security events are kept 30 days or 1 GiB, whichever comes first,
//     dropping the oldest (the hash-chained audit table is the long-term
//     record);
//   - revocations live as long as the longest access token (15 minutes)
//     plus a minute for clock leeway: after that a revoked token has
//     expired anyway (RevocationTTL).

// MaxAccessTokenLifetime is the contract's cap on access-token lifetimes.
const MaxAccessTokenLifetime = 15 * time.Minute

// EventsMaxAge is how long RAMPART_EVENTS keeps a domain event, so how
// long a consumer may receive it again (a redelivery, or a replay by a new
// durable). Idempotency records of consumed events (consumer.Once) must
// outlive it: consumer.DefaultRetention is derived from it.
const EventsMaxAge = 7 * 24 * time.Hour

const (
	securityMaxAge   = 30 * 24 * time.Hour
	securityMaxBytes = 1 << 30
	duplicateWindow  = 2 * time.Minute
	maxMsgSize       = 1 << 20
)

// RevocationTTL is how long a revocation record is kept.
const RevocationTTL = MaxAccessTokenLifetime + time.Minute

// StreamConfigs are the streams EnsureStreams creates.
func StreamConfigs() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name: StreamEvents, Subjects: []string{SubjectEventsPrefix + ">"},
			Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
			MaxAge: EventsMaxAge, Duplicates: duplicateWindow, MaxMsgSize: maxMsgSize,
		},
		{
			Name: StreamSecurity, Subjects: []string{SubjectSecurityPrefix + ">"},
			Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
			MaxAge: securityMaxAge, MaxBytes: securityMaxBytes, Duplicates: duplicateWindow, MaxMsgSize: maxMsgSize,
		},
	}
}

// EnsureStreams creates the streams and the revocation bucket when they are
// missing. It is idempotent, so every service may call it at start.
//
// It never updates an existing stream: services may not
// (DestructiveJetStreamAPI denies $JS.API.STREAM.UPDATE, since lowering a
// limit erases messages), and a stream that exists with other settings is
// left as the operator configured it. Creating with the same settings is a
// no-op on the server, so concurrent starts do not race.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range StreamConfigs() {
		if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: BucketRevocations, History: 1, TTL: RevocationTTL, Storage: jetstream.FileStorage,
		Description: "revoked token ids and per-subject not-before times",
	}); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
		return fmt.Errorf("kv %s: %w", BucketRevocations, err)
	}
	return nil
}
