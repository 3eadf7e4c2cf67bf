package audit

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Break is the first broken link Verify found.
type Break struct {
	// Seq is the position where the chain stops being trustworthy: every
	// entry before it checked out.
	Seq int64 `json:"seq"`
	// Problem says what is wrong, for an operator.
	Problem string `json:"problem"`
	// Expected and Actual are what the chain implies and what the row holds.
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
}

// String formats b for a log line or the verify command.
func (b Break) String() string {
	return fmt.Sprintf("seq %d: %s (expected %s, actual %s)", b.Seq, b.Problem, b.Expected, b.Actual)
}

// Report is Verify's answer.
type Report struct {
	// Entries is how many entries were checked, the broken one included.
	Entries int64 `json:"entries"`
	// Head is the last entry that checked out (seq 0 and GenesisHash for
	// an empty chain, or one broken at its first entry).
	Head Head `json:"head"`
	// Break is nil when the chain is intact.
	Break *Break `json:"break,omitempty"`
}

// OK reports whether the chain is intact.
func (r Report) OK() bool { return r.Break == nil }

// verifyBatch is how many rows Verify reads per query.
const verifyBatch = 1000

// Verify walks the chain from seq 1 and returns at the first broken link:
// a missing seq (a deleted row), a prev_hash that is not the previous
// entry's hash (rows moved or inserted), a hash that does not match the
// entry's content (an edited payload, seq or hash), a column that disagrees
// with the payload (an edited type, subject, …), or a checkpoint the chain
// does not contain (rows removed from the end, or the chain rebuilt). An
// error means the table could not be read, not that the chain is broken.
func Verify(ctx context.Context, db *gorm.DB, checkpoints ...Head) (Report, error) {
	rep := Report{Head: Head{Seq: 0, Hash: GenesisHash}}
	cps := map[int64]string{}
	var lastCP int64
	for _, cp := range checkpoints {
		cps[cp.Seq] = cp.Hash
		lastCP = max(lastCP, cp.Seq)
	}
	prev, want := GenesisHash, int64(1)
	for {
		// The first batch has no lower bound, so a row slipped in below
		// seq 1 is seen too.
		q := db.WithContext(ctx).Order("seq").Limit(verifyBatch)
		if want > 1 {
			q = q.Where("seq >= ?", want)
		}
		var rows []Entry
		if err := q.Find(&rows).Error; err != nil {
			return rep, fmt.Errorf("read audit log: %w", err)
		}
		for _, row := range rows {
			rep.Entries++
			if b := check(row, want, prev, cps); b != nil {
				rep.Break = b
				return rep, nil
			}
			prev, want = row.Hash, want+1
			rep.Head = Head{Seq: row.Seq, Hash: row.Hash}
		}
		if len(rows) < verifyBatch {
			break
		}
	}
	if lastCP > rep.Head.Seq {
		rep.Break = &Break{Seq: rep.Head.Seq + 1, Problem: fmt.Sprintf("checkpointed entry %d is missing: entries were removed from the end", lastCP),
			Expected: Head{Seq: lastCP, Hash: cps[lastCP]}.String(), Actual: rep.Head.String()}
	}
	return rep, nil
}

// check returns the first problem of row, expected at seq want after an
// entry whose hash is prev.
func check(row Entry, want int64, prev string, cps map[int64]string) *Break {
	switch {
	case row.Seq < want:
		return &Break{Seq: row.Seq, Problem: "entry outside the chain: seq below 1", Expected: fmt.Sprint(want), Actual: fmt.Sprint(row.Seq)}
	case row.Seq > want:
		return &Break{Seq: want, Problem: "entry missing: seq jumps", Expected: fmt.Sprint(want), Actual: fmt.Sprint(row.Seq)}
	}
	if row.PrevHash != prev {
		return &Break{Seq: want, Problem: "prev_hash is not the previous entry's hash: entries moved, inserted or rewritten", Expected: prev, Actual: row.PrevHash}
	}
	h, err := ChainHash(prev, row.Seq, []byte(row.Payload))
	if err != nil {
		return &Break{Seq: want, Problem: err.Error(), Expected: "hex SHA-256", Actual: prev}
	}
	if h != row.Hash {
		return &Break{Seq: want, Problem: "hash does not match the entry's content: the entry was edited", Expected: h, Actual: row.Hash}
	}
	d, err := fromPayload([]byte(row.Payload))
	if err != nil {
		return &Break{Seq: want, Problem: "payload is not an event: " + err.Error(), Expected: "a CloudEvent", Actual: row.Payload}
	}
	for _, f := range []struct{ name, want, got string }{
		{"event_id", d.EventID, row.EventID}, {"type", d.Type, row.Type}, {"reason", d.Reason, row.Reason},
		{"service", d.Service, row.Service}, {"severity", d.Severity, row.Severity}, {"subject", d.Subject, row.Subject},
		{"client_id", d.ClientID, row.ClientID}, {"client_ip", d.ClientIP, row.ClientIP}, {"trace_id", d.TraceID, row.TraceID},
	} {
		if f.want != f.got {
			return &Break{Seq: want, Problem: "column " + f.name + " does not match the payload: the entry was edited", Expected: f.want, Actual: f.got}
		}
	}
	// Databases keep microseconds at best; fromPayload truncates to them.
	if !row.Time.UTC().Truncate(time.Microsecond).Equal(d.Time) {
		return &Break{Seq: want, Problem: "column event_time does not match the payload: the entry was edited",
			Expected: d.Time.Format(time.RFC3339Nano), Actual: row.Time.UTC().Format(time.RFC3339Nano)}
	}
	if cp, ok := cps[row.Seq]; ok && cp != row.Hash {
		return &Break{Seq: want, Problem: "hash differs from the checkpoint: the chain was rebuilt from here or earlier", Expected: cp, Actual: row.Hash}
	}
	return nil
}
