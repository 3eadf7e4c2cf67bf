package natsx

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	// Host defaults to 127.0.0.1: a zero-value server must not listen on
	// every interface (nats-server's own default).
	Host string
	// Port 0 or -1 picks a free port. nats-server itself reads 0 as its
	// default 4222, which collides with a machine's NATS and surprises
	// anyone used to Go's ":0".
	Port int
	// StoreDir is where JetStream keeps its files.
	StoreDir string
	// TLS, when set, is required of every client.
	TLS *tls.Config
	// Users, when set, enables username/password authentication with
	// per-user permissions; no anonymous access.
	Users  []User
	Logger *slog.Logger
}

// User is one NATS account user with allow lists (and an optional deny list
// for publishing). An empty allow list denies everything.
type User struct {
	Name, Password     string
	Publish, Subscribe []string
	PublishDeny        []string
}

// DestructiveJetStreamAPI returns the JetStream API subjects no service
// needs: deleting, purging or updating a stream, or removing single
// messages. Deny them so a compromised service cannot erase the security
// record or the revocation bucket. Updates are in the list because the
// server applies lowered limits at once: a stream updated to max_msgs 1
// drops everything but its last message, a purge by another name.
// EnsureStreams therefore only creates; changing an existing stream's
// limits is an operator's job with an administrative NATS user.
func DestructiveJetStreamAPI() []string {
	return []string{"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.UPDATE.>"}
}

// SecurityStreamReadAPI returns the JetStream API subjects that read
// RAMPART_SECURITY or manage its consumers. Services only write security
// events; the audit trail (the ops user) is the stream's one reader. Were
// services allowed these, a compromised one could read every other
// service's events, or delete or redirect (re-create with another filter)
// the audit trail's durable consumer and so stop the audit record.
func SecurityStreamReadAPI() []string {
	s := StreamSecurity
	return []string{
		// A snapshot streams the whole stream to the requester.
		"$JS.API.STREAM.SNAPSHOT." + s,
		// CREATE, DELETE, INFO, LIST, NAMES, PAUSE, … on the stream.
		"$JS.API.CONSUMER.*." + s, "$JS.API.CONSUMER.*." + s + ".>",
		// DURABLE.CREATE, MSG.NEXT, LEADER.STEPDOWN.
		"$JS.API.CONSUMER.*.*." + s + ".>",
		"$JS.API.STREAM.MSG.GET." + s, "$JS.API.DIRECT.GET." + s, "$JS.API.DIRECT.GET." + s + ".>",
	}
}

// ServicePublishDeny is what every service user is denied:
// DestructiveJetStreamAPI and SecurityStreamReadAPI.
func ServicePublishDeny() []string {
	return append(DestructiveJetStreamAPI(), SecurityStreamReadAPI()...)
}

// ServicePermissions completes service name's own subjects with what a
// JetStream client needs — the parts of the JetStream API that EnsureStreams,
// durable consumers and the revocation bucket use, acknowledgements, and
// replies on its own inbox. Not the whole API: with $JS.API.> a service could
// create a stream of its own that sources or mirrors another (a copy it
// may read), or snapshot one. What remains is denied separately
// (ServicePublishDeny).
//
// Replies go to the service's own inbox prefix (InboxPrefix(name), which
// the service sets with Options.InboxPrefix): with the shared _INBOX.> any
// service could listen to every other's replies — pull deliveries of
// domain events, bucket reads, JetStream API answers.
func ServicePermissions(name string, publish, subscribe []string) (pub, sub []string) {
	pub = append(append([]string{}, publish...), serviceJetStreamAPI()...)
	pub = append(pub, "$JS.ACK.>", jsFlowControl)
	sub = append(append([]string{}, subscribe...), InboxPrefix(name)+".>")
	return pub, sub
}

// InboxPrefix is service name's reply-subject prefix (Options.InboxPrefix,
// ServicePermissions).
func InboxPrefix(name string) string { return "_INBOX_" + name }

// serviceJetStreamAPI is the JetStream API a service uses.
func serviceJetStreamAPI() []string {
	out := []string{
		"$JS.API.INFO",          // account info (CreateKeyValue)
		"$JS.API.STREAM.INFO.*", // stream and bucket lookups
		"$JS.API.STREAM.NAMES",  // stream by subject
		"$JS.API.STREAM.LIST",
		// The revocation bucket: reads, and the watcher's ordered consumer.
		"$JS.API.STREAM.MSG.GET.KV_" + BucketRevocations,
		"$JS.API.DIRECT.GET.KV_" + BucketRevocations + ".>",
		"$JS.API.CONSUMER.CREATE.KV_" + BucketRevocations,
		"$JS.API.CONSUMER.*.KV_" + BucketRevocations + ".>",
		// Durable consumers of RAMPART_EVENTS are per service
		// (DurableConsumerAPI): with all of $JS.API.CONSUMER.> any service
		// could read every domain event, or delete or re-filter another
		// service's durable and so stall, say, the erasure saga.
	}
	// EnsureStreams: the contract's streams only.
	for _, c := range StreamConfigs() {
		out = append(out, "$JS.API.STREAM.CREATE."+c.Name)
	}
	return append(out, "$JS.API.STREAM.CREATE.KV_"+BucketRevocations)
}

// jsFlowControl is where a push consumer with flow control (a KV watcher,
// so every service's revocation list) answers the server's flow-control
// requests. Without it the server stops delivering once a window of
// pending bytes is reached — a burst of revocations would stall the
// watcher for good, and revoked tokens keep working.
const jsFlowControl = "$JS.FC.>"

// DurableConsumerAPI is what a service needs to run its durable consumer
// name on stream, filtered to subject (shared/consumer): create it with
// exactly that filter, pull from it, and read its info. Add it to the
// service's publish list.
func DurableConsumerAPI(stream, name, subject string) []string {
	return []string{
		"$JS.API.CONSUMER.CREATE." + stream + "." + name + "." + subject,
		"$JS.API.CONSUMER.MSG.NEXT." + stream + "." + name,
		"$JS.API.CONSUMER.INFO." + stream + "." + name,
	}
}

// OpsPermissions are ServicePermissions with the whole JetStream API, for
// operators' tools and the audit trail (their deny list is
// DestructiveJetStreamAPI).
func OpsPermissions(publish, subscribe []string) (pub, sub []string) {
	pub = append(append([]string{}, publish...), "$JS.API.>", "$JS.ACK.>", jsFlowControl)
	sub = append(append([]string{}, subscribe...), "_INBOX.>")
	return pub, sub
}

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv *server.Server
	tls bool
}

// StartEmbedded starts the real nats-server in-process with JetStream and
// waits until it accepts connections.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "rampart-embedded",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		// JetStream limits sized for a laptop, not a cluster.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  4 << 30,
		MaxPayload:         1 << 20,
	}
	if o.TLS != nil {
		opts.TLSConfig = o.TLS
		opts.TLS = true
		opts.TLSTimeout = 2
	}
	for _, u := range o.Users {
		// The server keeps only a bcrypt hash. The passwords are generated
		// random secrets, so the minimum cost loses nothing to guessing and
		// keeps connecting cheap; what the hash buys is that a dump of the
		// server's options or memory does not hand out the credentials.
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("nats-server: hash the password of %s: %w", u.Name, err)
		}
		opts.Users = append(opts.Users, &server.User{
			Username: u.Name,
			Password: string(hash),
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: nonNil(u.Publish), Deny: u.PublishDeny},
				Subscribe: &server.SubjectPermission{Allow: nonNil(u.Subscribe)},
			},
		})
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(&logAdapter{log: o.Logger}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats-server: not ready within 10s")
	}
	return &Embedded{srv: srv, tls: o.TLS != nil}, nil
}

// nonNil turns an empty allow list into an explicit deny-all: nats-server
// reads a nil Allow as "everything".
func nonNil(s []string) []string {
	if len(s) == 0 {
		return []string{"_NOTHING_ALLOWED_"}
	}
	return s
}

// ClientURL is the URL clients dial: tls:// when TLS is required.
func (e *Embedded) ClientURL() string {
	u := e.srv.ClientURL()
	if _, hostport, ok := strings.Cut(u, "://"); ok && e.tls {
		u = "tls://" + hostport
	}
	return u
}

// Server exposes the server for tests that need its internals.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// logAdapter sends nats-server's log to slog: notices at debug (they are
// chatty start-up lines), warnings and errors as such.
type logAdapter struct{ log *slog.Logger }

func (l *logAdapter) Noticef(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}
func (l *logAdapter) Warnf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}
func (l *logAdapter) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}
func (l *logAdapter) Errorf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}
func (l *logAdapter) Debugf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}
func (l *logAdapter) Tracef(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}
