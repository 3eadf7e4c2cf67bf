package account

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/password"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
)

// cheap are the smallest argon2id parameters the hasher accepts: the
// rules under test do not depend on the cost.
var cheap = password.Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1}

const goodPassword = "correct horse battery staple"

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// fixture is a Service on a fresh, migrated database.
type fixture struct {
	svc      *Service
	db       *gorm.DB
	clock    *clock
	notified int
}

func newFixture(t *testing.T, url string) *fixture {
	t.Helper()
	db := dbxtest.Open(t, url, store.Migrations)
	h, err := password.NewHasher(cheap)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, clock: &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	f.svc = New(db, h, func() { f.notified++ })
	f.svc.now = f.clock.now
	return f
}

// outboxed returns the events queued in the outbox, oldest first.
func (f *fixture) outboxed(t *testing.T) []natsx.Event {
	t.Helper()
	var rows []outbox.Row
	if err := f.db.Order("created_at, id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := make([]natsx.Event, 0, len(rows))
	for _, r := range rows {
		var ev natsx.Event
		if err := json.Unmarshal([]byte(r.Payload), &ev); err != nil {
			t.Fatalf("outbox payload %q: %v", r.Payload, err)
		}
		if r.Subject != natsx.SubjectEventsPrefix+ev.Type {
			t.Errorf("outbox subject %q for event type %q", r.Subject, ev.Type)
		}
		out = append(out, ev)
	}
	return out
}

func (f *fixture) register(t *testing.T, email string, roles ...string) *store.Account {
	t.Helper()
	if len(roles) == 0 {
		roles = []string{policy.RoleUser}
	}
	a, err := f.svc.Register(context.Background(), Registration{Email: email, Password: goodPassword, DisplayName: "Ada"}, roles)
	if err != nil {
		t.Fatalf("register %s: %v", email, err)
	}
	return a
}

func codeOf(err error) problem.Code {
	var pe *problem.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func fieldsOf(err error) []string {
	var pe *problem.Error
	if !errors.As(err, &pe) {
		return nil
	}
	var out []string
	for _, f := range pe.Fields {
		out = append(out, f.Field)
	}
	return out
}

// TestRegisterQueuesAccountCreatedWithTheInsert: a valid registration
// stores a normalised, hashed account and queues exactly one
// account.created in the same transaction, with the contract's data and
// never the password.
func TestRegisterQueuesAccountCreatedWithTheInsert(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		a, err := f.svc.Register(context.Background(),
			Registration{Email: "  Ada.Lovelace@Example.ORG ", Password: goodPassword, DisplayName: "  Ada  "}, []string{policy.RoleUser})
		if err != nil {
			t.Fatal(err)
		}
		if a.Email != "ada.lovelace@example.org" || a.DisplayName != "Ada" || a.Roles != policy.RoleUser {
			t.Errorf("stored %+v", a)
		}
		if !strings.HasPrefix(a.PasswordHash, "$argon2id$") || strings.Contains(a.PasswordHash, goodPassword) {
			t.Errorf("password stored as %q", a.PasswordHash)
		}
		evs := f.outboxed(t)
		if len(evs) != 1 {
			t.Fatalf("%d outbox rows, want 1", len(evs))
		}
		ev := evs[0]
		if ev.Type != "account.created" || ev.Source != "auth-service" || ev.Subject != a.ID || ev.SpecVersion != "1.0" {
			t.Errorf("envelope %+v", ev)
		}
		var data Created
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.ID != a.ID || data.Email != a.Email || data.DisplayName != "Ada" ||
			!slices.Equal(data.Roles, []string{policy.RoleUser}) || data.CreatedAt.IsZero() {
			t.Errorf("data %+v", data)
		}
		if strings.Contains(string(ev.Data), goodPassword) || strings.Contains(string(ev.Data), "argon2") {
			t.Errorf("event data carries the password or its hash: %s", ev.Data)
		}
		if f.notified != 1 {
			t.Errorf("relay notified %d times", f.notified)
		}
	})
}

// TestRegisterRefusesWithoutSideEffects: every rule of NIST 800-63B and the
// email syntax is a 400 naming the field, a duplicate (in any case) is a
// 409, and none of them stores an account or queues an event.
func TestRegisterRefusesWithoutSideEffects(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		f.register(t, "taken@example.org")
		before := len(f.outboxed(t))
		cases := []struct {
			name       string
			in         Registration
			wantCode   problem.Code
			wantFields []string
		}{
			{"password too short", Registration{"a@example.org", "short pw 1", "A"}, problem.Invalid, []string{"password"}},
			{"password too long", Registration{"a@example.org", strings.Repeat("long passphrase ", 9), "A"}, problem.Invalid, []string{"password"}},
			{"common password", Registration{"a@example.org", "password1234", "A"}, problem.Invalid, []string{"password"}},
			{"password built on the email", Registration{"marguerite.yourcenar@example.org", "marguerite.yourcenar!", "M"}, problem.Invalid, []string{"password"}},
			{"email without a domain dot", Registration{"a@example", goodPassword, "A"}, problem.Invalid, []string{"email"}},
			{"email with a display name", Registration{"Ada <a@example.org>", goodPassword, "A"}, problem.Invalid, []string{"email"}},
			{"email missing", Registration{"", goodPassword, "A"}, problem.Invalid, []string{"email"}},
			{"display name empty", Registration{"a@example.org", goodPassword, "   "}, problem.Invalid, []string{"display_name"}},
			{"display name with control characters", Registration{"a@example.org", goodPassword, "A\x00B"}, problem.Invalid, []string{"display_name"}},
			{"every problem at once", Registration{"nope", "short", ""}, problem.Invalid, []string{"email", "display_name", "password"}},
			{"duplicate email", Registration{"taken@example.org", goodPassword, "B"}, problem.Conflict, nil},
			{"duplicate email in another case", Registration{"TAKEN@Example.org", goodPassword, "B"}, problem.Conflict, nil},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a, err := f.svc.Register(context.Background(), c.in, []string{policy.RoleUser})
				if a != nil || codeOf(err) != c.wantCode {
					t.Fatalf("got %v, %v; want code %q", a, err, c.wantCode)
				}
				if got := fieldsOf(err); !slices.Equal(got, c.wantFields) {
					t.Errorf("fields %v, want %v", got, c.wantFields)
				}
			})
		}
		var n int64
		f.db.Model(&store.Account{}).Count(&n)
		if n != 1 {
			t.Errorf("%d accounts stored, want 1", n)
		}
		if after := len(f.outboxed(t)); after != before {
			t.Errorf("refused registrations queued %d events", after-before)
		}
	})
}

// TestAuthenticateOutcomes: each outcome has its reason, and the reason is
// decided after the password hash so the work is the same for all.
func TestAuthenticateOutcomes(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		ctx := context.Background()
		a := f.register(t, "grace@example.org")
		disabled := f.register(t, "gone@example.org")
		if _, _, err := f.svc.Update(ctx, disabled.ID, Change{Disabled: new(true)}); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name, email, pw string
			want            secevent.Reason
			wantAccount     bool
		}{
			{"right password", "grace@example.org", goodPassword, secevent.ReasonNone, true},
			{"email in another case and padded", "  GRACE@example.org ", goodPassword, secevent.ReasonNone, true},
			{"wrong password", "grace@example.org", goodPassword + "!", secevent.ReasonBadCredentials, true},
			{"unknown account", "nobody@example.org", goodPassword, secevent.ReasonUnknownAccount, false},
			{"not an email at all", "nobody", goodPassword, secevent.ReasonUnknownAccount, false},
			{"disabled account with the right password", "gone@example.org", goodPassword, secevent.ReasonDisabled, true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				res, err := f.svc.Authenticate(ctx, c.email, c.pw)
				if err != nil {
					t.Fatal(err)
				}
				if res.Reason != c.want || (res.Account != nil) != c.wantAccount {
					t.Errorf("got reason %q account %v, want %q %v", res.Reason, res.Account != nil, c.want, c.wantAccount)
				}
			})
		}
		// The one failure above is forgotten after a success.
		if _, err := f.svc.Authenticate(ctx, "grace@example.org", goodPassword); err != nil {
			t.Fatal(err)
		}
		got, _ := f.svc.Get(ctx, a.ID)
		if got.FailedLogins != 0 {
			t.Errorf("failed_logins %d after a success", got.FailedLogins)
		}
	})
}

// TestAuthenticateGivenUpIsNoFailedAttempt: a login whose caller leaves
// while every hashing slot is busy is an error, not a wrong password: it
// neither counts towards the account's lockout nor reports a reason.
func TestAuthenticateGivenUpIsNoFailedAttempt(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		a := f.register(t, "ada@example.org")
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		// With a free slot the hash would still run; take them all so the
		// cancelled caller has to wait.
		busy, _ := password.NewHasherN(cheap, 1)
		f.svc.hasher = busy
		release := busy.Occupy()
		defer release()
		res, err := f.svc.Authenticate(gone, "ada@example.org", goodPassword+"!")
		if !errors.Is(err, context.Canceled) || res.Reason != "" {
			t.Fatalf("Authenticate after the caller left: reason %q, err %v; want context.Canceled", res.Reason, err)
		}
		if got, _ := f.svc.Get(context.Background(), a.ID); got.FailedLogins != 0 {
			t.Fatalf("failed_logins %d after an abandoned login, want 0", got.FailedLogins)
		}
	})
}

// TestAuthenticateUpgradesOldHashes: a hash made with other parameters is
// replaced at the next successful login.
func TestAuthenticateUpgradesOldHashes(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		ctx := context.Background()
		a := f.register(t, "old@example.org")
		stronger, err := password.NewHasher(password.Params{MemoryKiB: 9 * 1024, Time: 2, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		f.svc.hasher = stronger
		if res, err := f.svc.Authenticate(ctx, "old@example.org", goodPassword); err != nil || res.Reason != "" {
			t.Fatalf("login with the old hash: %+v %v", res, err)
		}
		got, _ := f.svc.Get(ctx, a.ID)
		if got.PasswordHash == a.PasswordHash || !strings.Contains(got.PasswordHash, "m=9216,t=2") {
			t.Errorf("hash not upgraded: %q", got.PasswordHash)
		}
		if res, _ := f.svc.Authenticate(ctx, "old@example.org", goodPassword); res.Reason != "" {
			t.Errorf("login with the upgraded hash: %q", res.Reason)
		}
	})
}

// TestLockoutBacksOffExponentially: the fifth consecutive failure locks the
// account for 30 s (reported once, as JustLocked); while locked even the
// right password fails with reason locked and is not counted; each further
// failure doubles the lock up to 15 minutes; a success resets it all.
func TestLockoutBacksOffExponentially(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		ctx := context.Background()
		a := f.register(t, "target@example.org")
		fail := func() LoginResult {
			t.Helper()
			res, err := f.svc.Authenticate(ctx, "target@example.org", "not the password at all")
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		lockedFor := func() time.Duration {
			t.Helper()
			got, _ := f.svc.Get(ctx, a.ID)
			if got.LockedUntil == nil {
				return 0
			}
			return got.LockedUntil.Sub(f.clock.now()).Round(time.Second)
		}
		for i := 1; i < LockThreshold; i++ {
			if res := fail(); res.Reason != secevent.ReasonBadCredentials || res.JustLocked {
				t.Fatalf("failure %d: %+v", i, res)
			}
		}
		if lockedFor() != 0 {
			t.Fatal("locked before the threshold")
		}
		if res := fail(); res.Reason != secevent.ReasonBadCredentials || !res.JustLocked {
			t.Fatalf("failure %d: %+v, want JustLocked", LockThreshold, res)
		}
		if d := lockedFor(); d != LockBase {
			t.Fatalf("locked for %v, want %v", d, LockBase)
		}
		// Locked: the right password is refused, and guesses are not counted.
		for range 3 {
			if res, _ := f.svc.Authenticate(ctx, "target@example.org", goodPassword); res.Reason != secevent.ReasonLocked {
				t.Fatalf("right password while locked: %q", res.Reason)
			}
			if res := fail(); res.Reason != secevent.ReasonLocked || res.JustLocked {
				t.Fatalf("wrong password while locked: %+v", res)
			}
		}
		// Each failure after a lock expires doubles the next one.
		want := LockBase
		for range 8 {
			f.clock.advance(want + time.Second)
			want = min(want*2, LockMax)
			if res := fail(); !res.JustLocked {
				t.Fatalf("failure after expiry did not lock again: %+v", res)
			}
			if d := lockedFor(); d != want {
				t.Fatalf("locked for %v, want %v", d, want)
			}
		}
		if want != LockMax {
			t.Fatalf("back-off never reached the cap: %v", want)
		}
		f.clock.advance(LockMax + time.Second)
		if res, _ := f.svc.Authenticate(ctx, "target@example.org", goodPassword); res.Reason != "" {
			t.Fatalf("right password after the lock: %q", res.Reason)
		}
		got, _ := f.svc.Get(ctx, a.ID)
		if got.FailedLogins != 0 || got.LockedUntil != nil {
			t.Errorf("after a success: failed_logins %d, locked_until %v", got.FailedLogins, got.LockedUntil)
		}
	})
}

// TestConcurrentGuessesMeetTheLockout: guesses sent at once are judged
// against the lock as it stands when their hash is done, not as it stood
// when they were read in: a right password whose turn comes after the
// guess that locked the account is refused as locked. Judged on the stale
// read, a burst of guesses from many addresses all counted, and the
// lockout bounded nothing.
func TestConcurrentGuessesMeetTheLockout(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		// One hashing slot, taken: logins read the account and queue for
		// the slot in the order they arrive, and run in that order. Real
		// cost, so that each login's bookkeeping is written while the
		// next one hashes, as in production.
		one, err := password.NewHasherN(password.DefaultParams, 1)
		if err != nil {
			t.Fatal(err)
		}
		f.svc.hasher = one
		f.register(t, "burst@example.org")
		release := one.Occupy()
		var (
			mu   sync.Mutex
			done []LoginResult // in the order the logins finished
			wg   sync.WaitGroup
		)
		for i := range LockThreshold + 1 {
			pw := "not the password at all"
			if i == LockThreshold {
				pw = goodPassword // the thief's lucky guess, last in line
			}
			wg.Go(func() {
				res, err := f.svc.Authenticate(context.Background(), "burst@example.org", pw)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				done = append(done, res)
				mu.Unlock()
			})
			time.Sleep(200 * time.Millisecond) // let it read the account and queue
		}
		release()
		wg.Wait()
		// Whatever order the slot was handed out in, no login may succeed
		// after one that locked the account.
		locked := false
		for i, res := range done {
			if locked && res.Reason == "" {
				t.Fatalf("login %d of %d succeeded after the account was locked: %+v", i+1, len(done), done)
			}
			locked = locked || res.JustLocked
		}
	})
}

// TestUpdateRecordsEachChangeOnce: roles and the disabled flag change in
// one transaction with their events; a no-op changes nothing and queues
// nothing; invalid roles and unknown accounts are refused.
func TestUpdateRecordsEachChangeOnce(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		ctx := context.Background()
		a := f.register(t, "staff@example.org")
		base := len(f.outboxed(t))
		roles := func(r ...string) *[]string { return &r }

		type want struct {
			kinds  []secevent.Reason
			events []string // outbox types queued by this step
		}
		steps := []struct {
			name string
			ch   Change
			want want
		}{
			{"promote", Change{Roles: roles("USER", "MANAGER", "MANAGER")}, want{[]secevent.Reason{secevent.ReasonRoles}, []string{"account.changed"}}},
			{"same roles in another order is no change", Change{Roles: roles("MANAGER", "USER")}, want{nil, nil}},
			{"disable", Change{Disabled: new(true)}, want{[]secevent.Reason{secevent.ReasonDisabled}, []string{"account.changed", "account.disabled"}}},
			{"disable again is no change", Change{Disabled: new(true)}, want{nil, nil}},
			{"enable and demote together", Change{Roles: roles("USER"), Disabled: new(false)},
				want{[]secevent.Reason{secevent.ReasonRoles, secevent.ReasonEnabled}, []string{"account.changed", "account.changed"}}},
			{"empty change", Change{}, want{nil, nil}},
		}
		seen := base
		for _, s := range steps {
			t.Run(s.name, func(t *testing.T) {
				f.clock.advance(time.Minute)
				got, kinds, err := f.svc.Update(ctx, a.ID, s.ch)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(kinds, s.want.kinds) {
					t.Errorf("kinds %v, want %v", kinds, s.want.kinds)
				}
				evs := f.outboxed(t)[seen:]
				seen += len(evs)
				var types []string
				for _, ev := range evs {
					types = append(types, ev.Type)
					var d Changed
					if err := json.Unmarshal(ev.Data, &d); err != nil {
						t.Fatal(err)
					}
					if d.ID != a.ID || ev.Subject != a.ID || !slices.Equal(d.Roles, got.RoleList()) || d.Disabled != got.Disabled {
						t.Errorf("%s data %+v for account %+v", ev.Type, d, got)
					}
				}
				if !slices.Equal(types, s.want.events) {
					t.Errorf("queued %v, want %v", types, s.want.events)
				}
				stored, _ := f.svc.Get(ctx, a.ID)
				if stored.Roles != got.Roles || stored.Disabled != got.Disabled {
					t.Errorf("returned %+v, stored %+v", got, stored)
				}
			})
		}
		stored, _ := f.svc.Get(ctx, a.ID)
		if stored.Roles != "USER" || stored.Disabled {
			t.Errorf("final state %+v", stored)
		}

		t.Run("enabling clears a lockout", func(t *testing.T) {
			for range LockThreshold {
				_, _ = f.svc.Authenticate(ctx, "staff@example.org", "not the password at all")
			}
			if _, _, err := f.svc.Update(ctx, a.ID, Change{Disabled: new(true)}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.svc.Update(ctx, a.ID, Change{Disabled: new(false)}); err != nil {
				t.Fatal(err)
			}
			if res, _ := f.svc.Authenticate(ctx, "staff@example.org", goodPassword); res.Reason != "" {
				t.Errorf("login after re-enable: %q", res.Reason)
			}
		})

		refusals := []struct {
			name string
			id   string
			ch   Change
			code problem.Code
		}{
			{"no roles", a.ID, Change{Roles: roles()}, problem.Invalid},
			{"unknown role", a.ID, Change{Roles: roles("USER", "ROOT")}, problem.Invalid},
			{"lower-case role", a.ID, Change{Roles: roles("admin")}, problem.Invalid},
			{"unknown account", "00000000-0000-4000-8000-000000000000", Change{Disabled: new(true)}, problem.NotFound},
		}
		for _, r := range refusals {
			t.Run("refused: "+r.name, func(t *testing.T) {
				before := len(f.outboxed(t))
				if _, _, err := f.svc.Update(ctx, r.id, r.ch); codeOf(err) != r.code {
					t.Fatalf("got %v, want code %q", err, r.code)
				}
				if after := len(f.outboxed(t)); after != before {
					t.Errorf("refused update queued %d events", after-before)
				}
			})
		}
	})
}

// TestListPagesInIDOrder: cursor pagination visits every account once.
func TestListPagesInIDOrder(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		f := newFixture(t, url)
		ctx := context.Background()
		want := map[string]bool{}
		for i := range 7 {
			want[f.register(t, "user"+string(rune('a'+i))+"@example.org").ID] = true
		}
		cursor, seen := "", 0
		for {
			page, err := f.svc.List(ctx, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page {
				if !want[a.ID] || a.ID <= cursor {
					t.Fatalf("unexpected or out-of-order %s after %q", a.ID, cursor)
				}
				delete(want, a.ID)
				seen++
				cursor = a.ID
			}
			if len(page) < 3 {
				break
			}
		}
		if seen != 7 || len(want) != 0 {
			t.Errorf("visited %d, missed %v", seen, want)
		}
	})
}

// TestGrantableScopes: admin only for ADMIN; unknown scopes dropped.
func TestGrantableScopes(t *testing.T) {
	asked := []string{"openid", "admin", "orders:read", "made-up", "openid"}
	if got := GrantableScopes([]string{policy.RoleUser, policy.RoleManager}, asked); !slices.Equal(got, []string{"openid", "orders:read"}) {
		t.Errorf("USER+MANAGER got %v", got)
	}
	if got := GrantableScopes([]string{policy.RoleAdmin}, asked); !slices.Equal(got, []string{"openid", "admin", "orders:read"}) {
		t.Errorf("ADMIN got %v", got)
	}
}
