package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/audit"
	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
)

// openDB opens url and migrates the audit table.
func openDB(t *testing.T, url string) *gorm.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
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
	return db
}

// event is a security event as secevent.Emitter publishes it.
func event(t testing.TB, typ secevent.Type, reason secevent.Reason, subject string) natsx.Event {
	t.Helper()
	ev, err := natsx.NewEvent(context.Background(), "rampart/auth-service", "rampart.security."+string(typ), subject, secevent.Data{
		Type: typ, Reason: reason, Service: "auth-service", Severity: secevent.DefaultSeverity(typ),
		Time: time.Now().UTC().Format(time.RFC3339Nano), Subject: subject, ClientIP: "192.0.2.7",
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func appendN(t *testing.T, db *gorm.DB, n int) []natsx.Event {
	t.Helper()
	var evs []natsx.Event
	for i := range n {
		ev := event(t, secevent.LoginFailed, secevent.ReasonBadCredentials, fmt.Sprintf("user-%d", i+1))
		res, err := audit.Append(context.Background(), db, ev)
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicate || res.Entry.Seq != int64(i+1) {
			t.Fatalf("append %d: %+v", i+1, res)
		}
		evs = append(evs, ev)
	}
	return evs
}

func verify(t *testing.T, db *gorm.DB, cps ...audit.Head) audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), db, cps...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func exec(t *testing.T, db *gorm.DB, sql string, args ...any) {
	t.Helper()
	if err := db.Exec(sql, args...).Error; err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestAppendBuildsAChainAndIgnoresRedelivery: entries are numbered in
// append order, each links to the one before, columns mirror the event, and
// an event id seen before appends nothing.
func TestAppendBuildsAChainAndIgnoresRedelivery(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := t.Context()
		db := openDB(t, url)
		if rep := verify(t, db); !rep.OK() || rep.Entries != 0 || rep.Head != (audit.Head{Seq: 0, Hash: audit.GenesisHash}) {
			t.Fatalf("empty chain: %+v", rep)
		}
		evs := appendN(t, db, 3)

		res, err := audit.Append(ctx, db, evs[1])
		if err != nil {
			t.Fatal(err)
		}
		if !res.Duplicate || res.Conflict || res.Entry.Seq != 2 {
			t.Fatalf("redelivery: %+v, want duplicate of seq 2", res)
		}
		forged := evs[0]
		forged.Subject = "someone-else"
		if res, err = audit.Append(ctx, db, forged); err != nil || !res.Duplicate || !res.Conflict {
			t.Fatalf("reused id with other content: %+v %v, want a conflicting duplicate", res, err)
		}

		entries, err := audit.Tail(ctx, db, audit.Filter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 3 {
			t.Fatalf("%d entries after 3 events and 2 redeliveries", len(entries))
		}
		prev := audit.GenesisHash
		for i, e := range entries {
			if e.Seq != int64(i+1) || e.EventID != evs[i].ID || e.PrevHash != prev {
				t.Fatalf("entry %d: seq %d id %s prev %s; want seq %d id %s prev %s", i, e.Seq, e.EventID, e.PrevHash, i+1, evs[i].ID, prev)
			}
			if e.Type != "auth.login.failed" || e.Reason != "bad_credentials" || e.Service != "auth-service" ||
				e.Subject != fmt.Sprintf("user-%d", i+1) || e.ClientIP != "192.0.2.7" || e.Severity != "low" {
				t.Fatalf("entry %d columns: %+v", i, e)
			}
			if !e.Time.Equal(evs[i].Time.Truncate(time.Microsecond)) {
				t.Fatalf("entry %d time %v, event time %v", i, e.Time, evs[i].Time)
			}
			prev = e.Hash
		}
		rep := verify(t, db)
		if !rep.OK() || rep.Entries != 3 || rep.Head.Seq != 3 || rep.Head.Hash != entries[2].Hash {
			t.Fatalf("intact chain: %+v", rep)
		}
		if h, err := audit.CurrentHead(ctx, db); err != nil || h != rep.Head {
			t.Fatalf("CurrentHead %v %v, Verify's head %v", h, err, rep.Head)
		}
	})
}

// TestVerifyFindsTheFirstBrokenLink tampers with a chain of five entries
// the ways an attacker with write access to the table could, and expects
// Verify to name the first entry that no longer checks out.
func TestVerifyFindsTheFirstBrokenLink(t *testing.T) {
	cases := []struct {
		rule string
		// tamper changes the table; entries are the chain before it.
		tamper  func(t *testing.T, db *gorm.DB, entries []audit.Entry)
		wantSeq int64 // 0: intact
		problem string
	}{
		{"an untouched chain verifies", func(*testing.T, *gorm.DB, []audit.Entry) {}, 0, ""},
		{"an edited payload breaks its own entry", func(t *testing.T, db *gorm.DB, _ []audit.Entry) {
			exec(t, db, "UPDATE audit_log SET payload = REPLACE(payload, 'user-3', 'user-9') WHERE seq = 3")
		}, 3, "hash does not match"},
		{"an edited column breaks its entry though the payload is intact", func(t *testing.T, db *gorm.DB, _ []audit.Entry) {
			exec(t, db, "UPDATE audit_log SET subject = 'user-9' WHERE seq = 3")
		}, 3, "column subject"},
		{"an edited event time breaks its entry", func(t *testing.T, db *gorm.DB, _ []audit.Entry) {
			exec(t, db, "UPDATE audit_log SET event_time = ? WHERE seq = 3", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
		}, 3, "column event_time"},
		{"an edited payload with a recomputed hash breaks the next link", func(t *testing.T, db *gorm.DB, e []audit.Entry) {
			payload := strings.ReplaceAll(e[2].Payload, "user-3", "user-9")
			h, _ := audit.ChainHash(e[2].PrevHash, 3, []byte(payload))
			exec(t, db, "UPDATE audit_log SET payload = ?, subject = 'user-9', hash = ? WHERE seq = 3", payload, h)
		}, 4, "prev_hash"},
		{"a deleted middle entry leaves a gap", func(t *testing.T, db *gorm.DB, _ []audit.Entry) {
			exec(t, db, "DELETE FROM audit_log WHERE seq = 3")
		}, 3, "entry missing"},
		{"a deleted entry with the rest renumbered breaks the hash, which covers seq", func(t *testing.T, db *gorm.DB, _ []audit.Entry) {
			exec(t, db, "DELETE FROM audit_log WHERE seq = 3")
			exec(t, db, "UPDATE audit_log SET seq = seq + 1000 WHERE seq > 3")
			exec(t, db, "UPDATE audit_log SET seq = seq - 1001 WHERE seq > 1000")
		}, 3, "prev_hash"},
		{"two swapped entries break at the first", func(t *testing.T, db *gorm.DB, _ []audit.Entry) {
			exec(t, db, "UPDATE audit_log SET seq = -2 WHERE seq = 2")
			exec(t, db, "UPDATE audit_log SET seq = 2 WHERE seq = 4")
			exec(t, db, "UPDATE audit_log SET seq = 4 WHERE seq = -2")
		}, 2, "prev_hash"},
		{"an entry inserted in the middle breaks the link after it", func(t *testing.T, db *gorm.DB, e []audit.Entry) {
			exec(t, db, "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3")
			exec(t, db, "UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000")
			forged := e[2]
			forged.Seq, forged.PrevHash, forged.EventID = 3, e[1].Hash, uuid.NewString()
			forged.Payload = strings.ReplaceAll(forged.Payload, e[2].EventID, forged.EventID)
			forged.Hash, _ = audit.ChainHash(forged.PrevHash, 3, []byte(forged.Payload))
			if err := db.Create(&forged).Error; err != nil {
				t.Fatal(err)
			}
		}, 4, "prev_hash"},
		{"an entry appended with a made-up hash breaks", func(t *testing.T, db *gorm.DB, e []audit.Entry) {
			forged := e[4]
			forged.Seq, forged.PrevHash, forged.EventID, forged.Hash = 6, e[4].Hash, uuid.NewString(), e[4].Hash
			forged.Payload = strings.ReplaceAll(forged.Payload, e[4].EventID, forged.EventID)
			if err := db.Create(&forged).Error; err != nil {
				t.Fatal(err)
			}
		}, 6, "hash does not match"},
		{"an entry slipped in below seq 1 is reported", func(t *testing.T, db *gorm.DB, e []audit.Entry) {
			forged := e[0]
			forged.Seq, forged.EventID = 0, uuid.NewString()
			if err := db.Create(&forged).Error; err != nil {
				t.Fatal(err)
			}
		}, 0, "seq below 1"},
	}
	dbxtest.Each(t, func(t *testing.T, url string) {
		db := openDB(t, url)
		for _, c := range cases {
			t.Run(c.rule, func(t *testing.T) {
				exec(t, db, "DELETE FROM audit_log")
				appendN(t, db, 5)
				entries, err := audit.Tail(t.Context(), db, audit.Filter{Limit: 5})
				if err != nil {
					t.Fatal(err)
				}
				c.tamper(t, db, entries)
				rep := verify(t, db)
				if c.problem == "" {
					if !rep.OK() || rep.Entries != 5 {
						t.Fatalf("report %+v, want intact with 5 entries", rep)
					}
					return
				}
				if rep.OK() {
					t.Fatalf("tampering not detected: %+v", rep)
				}
				if rep.Break.Seq != c.wantSeq || !strings.Contains(rep.Break.Problem, c.problem) {
					t.Fatalf("break %s; want seq %d, %q", rep.Break, c.wantSeq, c.problem)
				}
				if rep.Break.Seq > 1 && rep.Head.Seq != rep.Break.Seq-1 {
					t.Fatalf("head %v: want the last good entry, seq %d", rep.Head, rep.Break.Seq-1)
				}
			})
		}
	})
}

// TestCheckpointsCatchWhatTheChainCannot: removing entries from the end,
// or rebuilding the chain with fresh hashes, leaves a chain that verifies
// on its own; a head recorded elsewhere exposes both.
func TestCheckpointsCatchWhatTheChainCannot(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := t.Context()
		db := openDB(t, url)

		appendN(t, db, 5)
		cp, err := audit.CurrentHead(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if rep := verify(t, db, cp); !rep.OK() {
			t.Fatalf("intact chain against its own checkpoint: %s", rep.Break)
		}
		parsed, err := audit.ParseHead(cp.String())
		if err != nil || parsed != cp {
			t.Fatalf("ParseHead(%q) = %v, %v", cp, parsed, err)
		}

		t.Run("truncated tail", func(t *testing.T) {
			exec(t, db, "DELETE FROM audit_log WHERE seq > 3")
			if rep := verify(t, db); !rep.OK() {
				t.Fatalf("a truncated chain verifies on its own (the limit docs/audit.md states), got %s", rep.Break)
			}
			rep := verify(t, db, cp)
			if rep.OK() || rep.Break.Seq != 4 || !strings.Contains(rep.Break.Problem, "removed from the end") {
				t.Fatalf("truncation against checkpoint %v: %+v", cp, rep.Break)
			}
		})
		t.Run("rebuilt chain", func(t *testing.T) {
			exec(t, db, "DELETE FROM audit_log")
			appendN(t, db, 5) // same length, other events: a rewritten history
			if rep := verify(t, db); !rep.OK() {
				t.Fatalf("a rebuilt chain verifies on its own, got %s", rep.Break)
			}
			rep := verify(t, db, cp)
			if rep.OK() || rep.Break.Seq != 5 || !strings.Contains(rep.Break.Problem, "checkpoint") {
				t.Fatalf("rebuilt chain against checkpoint %v: %+v", cp, rep.Break)
			}
		})
	})
}

// TestConcurrentWritersDoNotForkTheChain: two connections pools (as two
// audit processes would have) appending at once still make one chain.
func TestConcurrentWritersDoNotForkTheChain(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		dbs := []*gorm.DB{openDB(t, url), openDB(t, url)}
		const each = 15
		var wg sync.WaitGroup
		errs := make(chan error, 2*each)
		for w := range 2 {
			wg.Go(func() {
				for range each {
					if _, err := audit.Append(context.Background(), dbs[w], event(t, secevent.AccessDenied, secevent.ReasonOwnership, "u")); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if rep := verify(t, dbs[0]); !rep.OK() || rep.Entries != 2*each {
			t.Fatalf("after concurrent appends: %+v", rep)
		}
	})
}

// TestTailFilters: type, subject, service and time narrow the tail; the
// newest entries come back, oldest first.
func TestTailFilters(t *testing.T) {
	db := openDB(t, dbxtest.SQLiteURL(t))
	ctx := t.Context()
	for i, ev := range []natsx.Event{
		event(t, secevent.LoginFailed, secevent.ReasonBadCredentials, "alice"),
		event(t, secevent.AccessDenied, secevent.ReasonOwnership, "bob"),
		event(t, secevent.LoginFailed, secevent.ReasonUnknownAccount, "bob"),
		event(t, secevent.AccessDenied, secevent.ReasonRole, "alice"),
	} {
		if i == 3 {
			ev.Time = time.Now().UTC().Add(time.Hour)
		}
		if _, err := audit.Append(ctx, db, ev); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(f audit.Filter) string {
		es, err := audit.Tail(ctx, db, f)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, e := range es {
			s = append(s, fmt.Sprint(e.Seq))
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		rule string
		f    audit.Filter
		want string
	}{
		{"no filter: everything, oldest first", audit.Filter{}, "1,2,3,4"},
		{"limit keeps the newest", audit.Filter{Limit: 2}, "3,4"},
		{"by type", audit.Filter{Type: "auth.login.failed"}, "1,3"},
		{"by subject", audit.Filter{Subject: "bob"}, "2,3"},
		{"by type and subject", audit.Filter{Type: "access.denied", Subject: "alice"}, "4"},
		{"by service", audit.Filter{Service: "gateway"}, ""},
		{"since", audit.Filter{Since: time.Now().Add(30 * time.Minute)}, "4"},
	} {
		if got := seqs(c.f); got != c.want {
			t.Errorf("%s: seqs %q, want %q", c.rule, got, c.want)
		}
	}
	es, _ := audit.Tail(ctx, db, audit.Filter{Limit: 1})
	b, err := json.Marshal(es[0])
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(b, &line); err != nil {
		t.Fatal(err)
	}
	if ev, ok := line["event"].(map[string]any); !ok || ev["id"] != es[0].EventID || line["hash"] != es[0].Hash {
		t.Fatalf("entry as JSON: %s", b)
	}
}

// TestCanonicalIgnoresKeyOrderAndWhitespace: the hash covers the event,
// not one encoder's choices.
func TestCanonicalIgnoresKeyOrderAndWhitespace(t *testing.T) {
	a, err := audit.Canonical([]byte(`{"b": 1, "a": {"y": "<&>", "x": 12345678901234567890}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := audit.Canonical([]byte("{\"a\":{\"x\":12345678901234567890,\"y\":\"<&>\"},\n\"b\":1}"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":{"x":12345678901234567890,"y":"<&>"},"b":1}`; string(a) != want || string(b) != want {
		t.Fatalf("canonical forms %s and %s, want %s", a, b, want)
	}
	if _, err := audit.Canonical([]byte(`{"a":1} {"b":2}`)); err == nil {
		t.Fatal("trailing data accepted")
	}
}
