// Package audit keeps a tamper-evident record of every security event: a
// durable JetStream consumer of RAMPART_SECURITY (Trail) appends each event
// to an append-only table whose rows are hash-chained, and Verify walks the
// chain and reports the first broken link.
//
// Each row carries seq (1, 2, 3, … with no gaps), the event's canonical
// CloudEvents JSON (payload), the previous row's hash (prev_hash; 64 zeros
// for seq 1) and
//
//	hash = SHA-256(prev_hash as 32 raw bytes || seq as 8 big-endian bytes || payload)
//
// in lower-case hex. Editing any row changes its hash or breaks the link to
// the next row; deleting a row leaves a gap in seq; moving rows around breaks
// prev_hash; renumbering breaks the hash, which covers seq. The other
// columns (type, reason, subject, …) are copies of payload fields kept for
// filtering, and Verify checks them against payload too.
//
// What a chain cannot show on its own: that rows were removed from its end,
// or that someone with write access rebuilt it from some row onwards with
// fresh hashes. A head (seq, hash) recorded somewhere the database's
// writers cannot reach — the checkpoint Trail logs, or the line `audit
// verify` prints — turns both into detectable breaks (Verify with a
// Checkpoint). docs/audit.md has the whole threat model.
//
// The table lives in a database of its own (migrations version from 0001,
// like a service's, and the audit writer should have its own role).
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the audit table in db.
func Migrate(ctx context.Context, db *gorm.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := dbx.Migrate(ctx, db, sub); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// GenesisHash is the prev_hash of the first entry.
var GenesisHash = strings.Repeat("0", 2*sha256.Size)

// lockKey is the PostgreSQL advisory lock that serialises appends across
// processes ("rampart\x01" as a big-endian integer): two audit writers
// sharing a database must never both append after the same head.
const lockKey int64 = 0x72616d7061727401

// Entry is one row of the audit table.
type Entry struct {
	Seq      int64     `gorm:"column:seq;primaryKey;autoIncrement:false"`
	EventID  string    `gorm:"column:event_id"`
	Time     time.Time `gorm:"column:event_time"`
	Type     string    `gorm:"column:type"`
	Reason   string    `gorm:"column:reason"`
	Service  string    `gorm:"column:service"`
	Severity string    `gorm:"column:severity"`
	Subject  string    `gorm:"column:subject"`
	ClientID string    `gorm:"column:client_id"`
	ClientIP string    `gorm:"column:client_ip"`
	TraceID  string    `gorm:"column:trace_id"`
	// Payload is the event's canonical JSON: what the hash covers.
	Payload  string `gorm:"column:payload"`
	PrevHash string `gorm:"column:prev_hash"`
	Hash     string `gorm:"column:hash"`
}

// TableName is the audit table's name.
func (Entry) TableName() string { return "audit_log" }

// entryJSON is an Entry as `audit tail` prints it: the payload embedded as
// JSON, not as a string.
type entryJSON struct {
	Seq      int64           `json:"seq"`
	EventID  string          `json:"event_id"`
	Time     time.Time       `json:"time"`
	Type     string          `json:"type"`
	Reason   string          `json:"reason,omitempty"`
	Service  string          `json:"service,omitempty"`
	Severity string          `json:"severity,omitempty"`
	Subject  string          `json:"subject,omitempty"`
	ClientID string          `json:"client_id,omitempty"`
	ClientIP string          `json:"client_ip,omitempty"`
	TraceID  string          `json:"trace_id,omitempty"`
	Event    json.RawMessage `json:"event"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// MarshalJSON embeds the payload as a JSON value (an invalid payload, which
// only tampering produces, is embedded as a string).
func (e Entry) MarshalJSON() ([]byte, error) {
	ev := json.RawMessage(e.Payload)
	if !json.Valid(ev) {
		b, _ := json.Marshal(e.Payload)
		ev = b
	}
	return json.Marshal(entryJSON{
		Seq: e.Seq, EventID: e.EventID, Time: e.Time, Type: e.Type, Reason: e.Reason, Service: e.Service,
		Severity: e.Severity, Subject: e.Subject, ClientID: e.ClientID, ClientIP: e.ClientIP, TraceID: e.TraceID,
		Event: ev, PrevHash: e.PrevHash, Hash: e.Hash,
	})
}

// Canonical returns raw JSON in the form the chain hashes: object keys
// sorted, no insignificant whitespace, numbers exactly as written, no HTML
// escaping. Two encodings of the same event give the same bytes, so the
// hash does not depend on which encoder published it.
func Canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("canonical json: trailing data")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ChainHash is the hash of the entry at seq with payload, following prev.
func ChainHash(prev string, seq int64, payload []byte) (string, error) {
	p, err := hex.DecodeString(prev)
	if err != nil || len(p) != sha256.Size {
		return "", fmt.Errorf("prev_hash %q is not a hex SHA-256", prev)
	}
	h := sha256.New()
	h.Write(p)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], uint64(seq)) //nolint:gosec // G115: seq is positive, the bit pattern is what is hashed
	h.Write(s[:])
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fromPayload derives an entry's indexed columns from its payload. It is
// lenient on purpose: an event whose data is not a secevent.Data is still
// recorded, under the envelope's type and source.
func fromPayload(payload []byte) (Entry, error) {
	var env natsx.Event
	if err := json.Unmarshal(payload, &env); err != nil {
		return Entry{}, fmt.Errorf("decode event: %w", err)
	}
	var d secevent.Data
	_ = json.Unmarshal(env.Data, &d)
	e := Entry{
		EventID: env.ID, Time: env.Time.UTC().Truncate(time.Microsecond),
		Type: string(d.Type), Reason: string(d.Reason), Service: d.Service, Severity: string(d.Severity),
		Subject: d.Subject, ClientID: d.ClientID, ClientIP: d.ClientIP, TraceID: d.TraceID,
		Payload: string(payload),
	}
	if e.Type == "" {
		e.Type = strings.TrimPrefix(env.Type, "rampart.security.")
	}
	if e.Service == "" {
		e.Service = strings.TrimPrefix(env.Source, "rampart/")
	}
	if e.Subject == "" {
		e.Subject = env.Subject
	}
	return e, nil
}

// Result says what Append did.
type Result struct {
	// Entry is the appended entry, or the one already recorded under the
	// event's id.
	Entry Entry
	// Duplicate is true when the event id was already recorded: nothing
	// was appended.
	Duplicate bool
	// Conflict is true for a duplicate whose content differs from the
	// recorded event: someone reused an event id. The first stays.
	Conflict bool
}

// Append adds ev at the head of the chain, in one transaction. Appends are
// serialised: on PostgreSQL by a transaction-scoped advisory lock, on SQLite
// by the write lock dbx's BEGIN IMMEDIATE takes; seq's primary key refuses a
// fork even without either. An event id already recorded appends nothing
// (Result.Duplicate), so redelivery is harmless. It returns an error
// wrapping ErrInvalid when ev cannot be encoded (retrying will not help).
func Append(ctx context.Context, db *gorm.DB, ev natsx.Event) (Result, error) {
	if ev.ID == "" {
		return Result{}, fmt.Errorf("%w: event has no id", ErrInvalid)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	payload, err := Canonical(raw)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	e, err := fromPayload(payload)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var res Result
	err = dbx.InTx(ctx, db, func(tx *gorm.DB) error {
		if dbx.Dialect(tx) == "postgres" {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", lockKey).Error; err != nil {
				return fmt.Errorf("lock audit chain: %w", err)
			}
		}
		var existing Entry
		switch err := tx.Where("event_id = ?", e.EventID).Take(&existing).Error; {
		case err == nil:
			res = Result{Entry: existing, Duplicate: true, Conflict: existing.Payload != e.Payload}
			return nil
		case !errors.Is(err, gorm.ErrRecordNotFound):
			return fmt.Errorf("look up event %s: %w", e.EventID, err)
		}
		head, err := headOf(tx)
		if err != nil {
			return err
		}
		e.Seq, e.PrevHash = head.Seq+1, head.Hash
		if e.Hash, err = ChainHash(e.PrevHash, e.Seq, payload); err != nil {
			return fmt.Errorf("head entry %d: %w", head.Seq, err)
		}
		if err := tx.Create(&e).Error; err != nil {
			return fmt.Errorf("append event %s: %w", e.EventID, err)
		}
		res = Result{Entry: e}
		return nil
	})
	return res, err
}

// ErrInvalid marks an event Append cannot record.
var ErrInvalid = errors.New("audit: invalid event")

// Head is the newest entry's position and hash: what a checkpoint records.
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// String formats h as "seq:hash", the form Verify's checkpoints and `audit
// verify --checkpoint` take.
func (h Head) String() string { return fmt.Sprintf("%d:%s", h.Seq, h.Hash) }

// ParseHead parses "seq:hash".
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	var h Head
	if _, err := fmt.Sscanf(seq, "%d", &h.Seq); !ok || err != nil || h.Seq < 1 {
		return Head{}, fmt.Errorf("checkpoint %q: want seq:hash", s)
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
		return Head{}, fmt.Errorf("checkpoint %q: hash must be 64 hex digits", s)
	}
	h.Hash = strings.ToLower(hash)
	return h, nil
}

// CurrentHead returns the newest entry's seq and hash; an empty chain has
// seq 0 and GenesisHash.
func CurrentHead(ctx context.Context, db *gorm.DB) (Head, error) {
	return headOf(db.WithContext(ctx))
}

func headOf(tx *gorm.DB) (Head, error) {
	var last Entry
	err := tx.Select("seq", "hash").Order("seq DESC").Limit(1).Take(&last).Error
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		return Head{Seq: 0, Hash: GenesisHash}, nil
	case err != nil:
		return Head{}, fmt.Errorf("read audit head: %w", err)
	}
	return Head{Seq: last.Seq, Hash: last.Hash}, nil
}
