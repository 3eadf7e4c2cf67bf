// Package account owns accounts: registration, password checks with
// lockout, role and status changes, and the roles → scopes rule.
package account

import (
	"context"
	"errors"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/rampart-go/rampart/auth-service/internal/password"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
)

// Scopes every signed-in user may hold, and the one only admins may.
var (
	userScopes = []string{"openid", "profile", "email", "offline_access", "users:read", "users:write", "orders:read", "orders:write"}
	adminScope = "admin"
)

// GrantableScopes narrows asked to what roles allow: a token carries only
// the scopes its user's roles permit (CONTRACT §2).
func GrantableScopes(roles, asked []string) []string {
	out := make([]string, 0, len(asked))
	for _, s := range asked {
		ok := slices.Contains(userScopes, s) || (s == adminScope && slices.Contains(roles, policy.RoleAdmin))
		if ok && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Roles in the order they are stored.
var Roles = []string{policy.RoleAdmin, policy.RoleManager, policy.RoleUser}

// Lockout policy: after LockThreshold consecutive failures an account is
// locked for LockBase, doubling with each further failure up to LockMax.
// Exponential back-off makes online guessing hopeless (a few dozen guesses
// a day) while a legitimate user who fat-fingers is back within a minute.
const (
	LockThreshold = 5
	LockBase      = 30 * time.Second
	LockMax       = 15 * time.Minute
)

// Service is the account store and rules.
type Service struct {
	db     *gorm.DB
	hasher *password.Hasher
	notify func()
	now    func() time.Time
}

// New returns a Service. notify wakes the outbox relay after a commit.
func New(db *gorm.DB, hasher *password.Hasher, notify func()) *Service {
	if notify == nil {
		notify = func() {}
	}
	return &Service{db: db, hasher: hasher, notify: notify, now: time.Now}
}

// Hasher returns the password hasher.
func (s *Service) Hasher() *password.Hasher { return s.hasher }

// Registration is the register request body.
type Registration struct {
	Email       string `json:"email"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
}

// Created is the data of account.created: what user-service needs to
// create the profile. Never the password.
type Created struct {
	ID          string    `json:"id"`
	Email       string    `json:"email"`
	DisplayName string    `json:"display_name"`
	Roles       []string  `json:"roles"`
	CreatedAt   time.Time `json:"created_at"`
}

// NormaliseEmail lower-cases and trims an address; ok is false when it is
// not a plain addr-spec (no display names, no comments).
func NormaliseEmail(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || len(s) > 254 {
		return "", false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "", false
	}
	return s, true
}

// Register creates an account with roles and queues account.created in the
// same transaction.
func (s *Service) Register(ctx context.Context, in Registration, roles []string) (*store.Account, error) {
	var fields []problem.FieldError
	email, ok := NormaliseEmail(in.Email)
	if !ok {
		fields = append(fields, problem.FieldError{Field: "email", Message: "must be a valid email address"})
	}
	name := strings.TrimSpace(in.DisplayName)
	if n := utf8.RuneCountInString(name); n < 1 || n > 100 || strings.ContainsFunc(name, unicode.IsControl) {
		fields = append(fields, problem.FieldError{Field: "display_name", Message: "must be 1 to 100 printable characters"})
	}
	local, _, _ := strings.Cut(email, "@")
	if p := password.Check(in.Password, local, name); p != "" {
		fields = append(fields, problem.FieldError{Field: "password", Message: string(p)})
	}
	if len(fields) > 0 {
		return nil, &problem.Error{Code: problem.Invalid, Message: "the registration is invalid", Fields: fields}
	}
	phc, err := s.hasher.Hash(ctx, in.Password)
	if err != nil {
		// Only a caller that left or timed out while every hashing slot
		// was busy gets here: the server is saturated, not broken.
		return nil, problem.Wrap(problem.Unavailable, "registration is busy; try again shortly", err)
	}
	now := s.now().UTC()
	acct := &store.Account{
		ID: uuid.NewString(), Email: email, DisplayName: name, PasswordHash: phc,
		Roles: strings.Join(roles, " "), CreatedAt: now, UpdatedAt: now,
	}
	ev, err := natsx.NewEvent(ctx, "auth-service", "account.created", acct.ID, Created{
		ID: acct.ID, Email: email, DisplayName: name, Roles: roles, CreatedAt: now,
	})
	if err != nil {
		return nil, err
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(acct)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return problem.New(problem.Conflict, "an account with this email already exists")
		}
		return outbox.Add(tx, natsx.SubjectEventsPrefix+"account.created", ev)
	})
	if err != nil {
		return nil, err
	}
	s.notify()
	return acct, nil
}

// LoginResult is the outcome of Authenticate: Reason is empty on success.
type LoginResult struct {
	Account    *store.Account
	Reason     secevent.Reason
	JustLocked bool
}

// Authenticate checks an email and password. Every path does one argon2id
// verification (against a dummy hash when there is no account), so the
// answer takes the same time whether or not the account exists; locked
// and disabled accounts are checked after the hash for the same reason.
func (s *Service) Authenticate(ctx context.Context, email, pw string) (LoginResult, error) {
	addr, _ := NormaliseEmail(email)
	var acct store.Account
	err := s.db.WithContext(ctx).Where("email = ?", addr).Take(&acct).Error
	if errors.Is(err, gorm.ErrRecordNotFound) || addr == "" {
		s.hasher.Burn(ctx, pw)
		return LoginResult{Reason: secevent.ReasonUnknownAccount}, nil
	}
	if err != nil {
		return LoginResult{}, err
	}
	ok, rehash, verr := s.hasher.Verify(ctx, pw, acct.PasswordHash)
	if verr != nil && ctx.Err() != nil {
		// The caller left while waiting for a hashing slot: no attempt
		// was made, so none is counted against the account.
		return LoginResult{}, verr
	}
	now := s.now().UTC()
	switch {
	case acct.LockedUntil != nil && now.Before(*acct.LockedUntil):
		return LoginResult{Account: &acct, Reason: secevent.ReasonLocked}, nil
	case acct.Disabled:
		return LoginResult{Account: &acct, Reason: secevent.ReasonDisabled}, nil
	case verr != nil || !ok:
		return s.recordFailure(ctx, &acct, now)
	}
	updates := map[string]any{"failed_logins": 0, "locked_until": nil}
	if rehash {
		// The parameters changed since this hash was made: upgrade it now
		// that we briefly hold the password.
		if phc, err := s.hasher.Hash(ctx, pw); err == nil {
			updates["password_hash"] = phc
		}
	}
	// The lock is judged again on the row as it is now, in the same
	// statement that clears the failure count: acct was read before this
	// login waited for a hashing slot, and logins sent at once all read it
	// unlocked. Judged on that read, a burst of guesses from many
	// addresses was tried in full, the right one succeeding even after
	// the guesses before it in the queue had locked the account.
	res := s.db.WithContext(ctx).Model(&store.Account{}).
		Where("id = ? AND (locked_until IS NULL OR locked_until <= ?)", acct.ID, now).Updates(updates)
	if res.Error != nil {
		return LoginResult{}, res.Error
	}
	if res.RowsAffected == 0 {
		return LoginResult{Account: &acct, Reason: secevent.ReasonLocked}, nil
	}
	return LoginResult{Account: &acct}, nil
}

// recordFailure counts a failure atomically and locks the account once the
// threshold is reached.
func (s *Service) recordFailure(ctx context.Context, acct *store.Account, now time.Time) (LoginResult, error) {
	db := s.db.WithContext(ctx)
	if err := db.Model(&store.Account{}).Where("id = ?", acct.ID).
		UpdateColumn("failed_logins", gorm.Expr("failed_logins + 1")).Error; err != nil {
		return LoginResult{}, err
	}
	var n int
	if err := db.Model(&store.Account{}).Where("id = ?", acct.ID).Select("failed_logins").Scan(&n).Error; err != nil {
		return LoginResult{}, err
	}
	res := LoginResult{Account: acct, Reason: secevent.ReasonBadCredentials}
	if n >= LockThreshold {
		d := LockBase << min(n-LockThreshold, 10)
		if d > LockMax {
			d = LockMax
		}
		until := now.Add(d)
		if err := db.Model(&store.Account{}).Where("id = ?", acct.ID).Update("locked_until", until).Error; err != nil {
			return LoginResult{}, err
		}
		res.JustLocked = true
	}
	return res, nil
}

// Get returns the account with id, or nil.
func (s *Service) Get(ctx context.Context, id string) (*store.Account, error) {
	var a store.Account
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&a).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	return &a, err
}

// List returns up to limit accounts with ids after cursor, in id order.
func (s *Service) List(ctx context.Context, cursor string, limit int) ([]store.Account, error) {
	var out []store.Account
	q := s.db.WithContext(ctx).Order("id").Limit(limit)
	if cursor != "" {
		q = q.Where("id > ?", cursor)
	}
	return out, q.Find(&out).Error
}

// Changed is the data of account.changed and account.disabled: the
// account's state after the change, and which kind of change it was
// (roles, disabled or enabled).
type Changed struct {
	ID       string   `json:"id"`
	Change   string   `json:"change"`
	Roles    []string `json:"roles"`
	Disabled bool     `json:"disabled"`
}

// Change is an admin's change to an account; nil fields stay as they are.
type Change struct {
	Roles    *[]string `json:"roles"`
	Disabled *bool     `json:"disabled"`
}

// Update applies ch and reports which kinds of change happened, queueing
// account.changed (and account.disabled) events in the same transaction.
func (s *Service) Update(ctx context.Context, id string, ch Change) (*store.Account, []secevent.Reason, error) {
	var kinds []secevent.Reason
	var out store.Account
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("id = ?", id).Take(&out).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return problem.New(problem.NotFound, "no such account")
			}
			return err
		}
		updates := map[string]any{}
		if ch.Roles != nil {
			roles, err := validRoles(*ch.Roles)
			if err != nil {
				return err
			}
			if joined := strings.Join(roles, " "); joined != out.Roles {
				updates["roles"] = joined
				out.Roles = joined
				kinds = append(kinds, secevent.ReasonRoles)
			}
		}
		if ch.Disabled != nil && *ch.Disabled != out.Disabled {
			updates["disabled"] = *ch.Disabled
			out.Disabled = *ch.Disabled
			if *ch.Disabled {
				kinds = append(kinds, secevent.ReasonDisabled)
			} else {
				updates["failed_logins"], updates["locked_until"] = 0, nil
				kinds = append(kinds, secevent.ReasonEnabled)
			}
		}
		if len(updates) == 0 {
			return nil
		}
		out.UpdatedAt = s.now().UTC()
		updates["updated_at"] = out.UpdatedAt
		if err := tx.Model(&store.Account{}).Where("id = ?", id).Updates(updates).Error; err != nil {
			return err
		}
		// Every change is an account.changed; disabling is also the
		// account.disabled that CONTRACT §4 names for consumers that only
		// care about accounts going away.
		for _, k := range kinds {
			types := []string{"account.changed"}
			if k == secevent.ReasonDisabled {
				types = append(types, "account.disabled")
			}
			for _, typ := range types {
				ev, err := natsx.NewEvent(ctx, "auth-service", typ, id, Changed{
					ID: id, Change: string(k), Roles: out.RoleList(), Disabled: out.Disabled,
				})
				if err != nil {
					return err
				}
				if err := outbox.Add(tx, natsx.SubjectEventsPrefix+typ, ev); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(kinds) > 0 {
		s.notify()
	}
	return &out, kinds, nil
}

func validRoles(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, &problem.Error{Code: problem.Invalid, Message: "invalid roles",
			Fields: []problem.FieldError{{Field: "roles", Message: "at least one role is required"}}}
	}
	var out []string
	for _, r := range Roles { // canonical order, no duplicates
		if slices.Contains(in, r) {
			out = append(out, r)
		}
	}
	for _, r := range in {
		if !slices.Contains(Roles, r) {
			return nil, &problem.Error{Code: problem.Invalid, Message: "invalid roles",
				Fields: []problem.FieldError{{Field: "roles", Message: "roles are ADMIN, MANAGER and USER"}}}
		}
	}
	return out, nil
}

// Seed creates the account if no account has the email, with a password
// that must pass the same rules as any other. It is how the bootstrap
// admin and devstack's demo accounts come to exist.
func (s *Service) Seed(ctx context.Context, email, pw, name string, roles []string) (*store.Account, bool, error) {
	addr, ok := NormaliseEmail(email)
	if !ok {
		return nil, false, errors.New("seed: invalid email " + email)
	}
	var existing store.Account
	if err := s.db.WithContext(ctx).Where("email = ?", addr).Take(&existing).Error; err == nil {
		return &existing, false, nil
	}
	a, err := s.Register(ctx, Registration{Email: addr, Password: pw, DisplayName: name}, roles)
	return a, err == nil, err
}
