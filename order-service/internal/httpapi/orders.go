package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/rampart-go/rampart/order-service/internal/order"
	"github.com/rampart-go/rampart/order-service/internal/store"
	"github.com/rampart-go/rampart/order-service/internal/userclient"
	"github.com/rampart-go/rampart/shared/authn"
	"github.com/rampart-go/rampart/shared/jsonx"
	"github.com/rampart-go/rampart/shared/page"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
)

// IdempotencyHeader is the request header of the IETF draft
// (draft-ietf-httpapi-idempotency-key-header), honoured for
// store.IdempotencyWindow (24 hours); ReplayedHeader marks an answer that
// repeats an earlier request's result.
const (
	IdempotencyHeader = "Idempotency-Key"
	ReplayedHeader    = "Idempotent-Replayed"
	maxKeyLen         = 255
)

// noCustomer is the 422 for an account without a customer profile.
const noCustomer = "this account has no customer profile"

// parseCreate decodes and validates a create-order request: the strict
// JSON body and the optional Idempotency-Key. It is the network-facing
// parser of this service, fuzzed by FuzzParseCreate. The hash is of the
// request's canonical form (re-encoded after decoding), so whitespace or
// key order do not make a replay look like a different request.
func parseCreate(body io.Reader, key string) (order.CreateRequest, store.Idempotency, error) {
	var req order.CreateRequest
	if err := jsonx.Decode(body, &req); err != nil {
		return req, store.Idempotency{}, err
	}
	if errs := req.Validate(); len(errs) > 0 {
		return req, store.Idempotency{}, &problem.Error{Code: problem.Invalid, Message: "the order is invalid", Fields: errs}
	}
	if key == "" {
		return req, store.Idempotency{}, nil
	}
	if len(key) > maxKeyLen || !visibleASCII(key) {
		return req, store.Idempotency{}, &problem.Error{Code: problem.Invalid, Message: "invalid " + IdempotencyHeader,
			Fields: []problem.FieldError{{Field: IdempotencyHeader, Message: "must be 1 to 255 visible ASCII characters"}}}
	}
	canonical, err := json.Marshal(req)
	if err != nil {
		return req, store.Idempotency{}, err
	}
	sum := sha256.Sum256(canonical)
	return req, store.Idempotency{Key: key, Hash: hex.EncodeToString(sum[:])}, nil
}

func visibleASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// create is POST /orders: the caller's own order, priced by us, shipped to
// the address in their profile.
func (h handlers) create(c *gin.Context) {
	ctx := c.Request.Context()
	claims := authn.Claims(c)
	req, idem, err := parseCreate(c.Request.Body, c.GetHeader(IdempotencyHeader))
	if err != nil {
		server.Fail(c, err)
		return
	}
	// A replay is answered before anything else is done again: no second
	// call to user-service, no second order.
	if prev, found, err := h.Orders.Replay(ctx, claims.Subject, idem); found || err != nil {
		h.created(c, prev, found, err)
		return
	}
	skus := make([]string, len(req.Items))
	for i, l := range req.Items {
		skus[i] = l.SKU
	}
	catalog, err := h.Orders.Prices(ctx, skus)
	if err != nil {
		server.Fail(c, err)
		return
	}
	items, total, currency, errs := order.Price(req, catalog)
	if len(errs) > 0 {
		server.Fail(c, &problem.Error{Code: problem.Invalid, Message: "the order is invalid", Fields: errs})
		return
	}
	// The customer must exist, and we take their address as it is now.
	// If user-service cannot answer, nothing is written: the client
	// retries (with the same Idempotency-Key) when it is back.
	cust, err := h.Customers.Customer(ctx, authn.RawToken(c), claims.Subject)
	switch {
	case errors.Is(err, userclient.ErrUnavailable):
		server.RetryAfter(c, userclient.RetryAfter(err))
		server.Fail(c, problem.Wrap(problem.Unavailable, "the customer directory is unavailable; retry later", err))
		return
	case errors.Is(err, userclient.ErrNoCustomer):
		server.Fail(c, problem.New(problem.Unprocessable, noCustomer))
		return
	case errors.Is(err, userclient.ErrRefused):
		// Revoked since we verified it: a rejected token like any other,
		// so the same 401 as authn.Middleware's (CONTRACT §2: the header
		// that makes clients refresh, the body that tells nothing of why).
		// Its one token.rejected event is auth-service's, which refused
		// the exchange.
		c.Header("WWW-Authenticate", `Bearer realm="`+authn.Realm+`", error="invalid_token"`)
		server.Fail(c, problem.New(problem.Unauthenticated, "the access token is invalid"))
		return
	case err != nil:
		server.Fail(c, err)
		return
	}
	o, replayed, err := h.Orders.Create(ctx, order.Order{
		UserID: claims.Subject, Items: items, TotalCents: total, Currency: currency, ShippingAddress: cust.Address,
	}, idem)
	h.created(c, o, replayed, err)
}

// created answers a create or its replay: the same status and body, and a
// header saying it is a replay.
func (h handlers) created(c *gin.Context, o order.Order, replayed bool, err error) {
	if errors.Is(err, order.ErrIdempotencyMismatch) {
		server.Fail(c, problem.New(problem.Unprocessable, IdempotencyHeader+" was already used for a different request"))
		return
	}
	if errors.Is(err, order.ErrCustomerErased) {
		// Erased after user-service confirmed them: the same answer as a
		// customer whose profile is already gone.
		server.Fail(c, problem.New(problem.Unprocessable, noCustomer))
		return
	}
	if err != nil {
		server.Fail(c, err)
		return
	}
	if replayed {
		c.Header(ReplayedHeader, "true")
	}
	c.Header("Location", "/api/v1/orders/"+o.ID)
	noStore(c)
	c.JSON(http.StatusCreated, o)
}

// list is GET /orders: a customer's own orders; staff see everyone's, or
// one customer's with ?user_id=. A customer asking for someone else's
// list is refused (filtering by customer is a staff function).
func (h handlers) list(c *gin.Context) {
	claims := authn.Claims(c)
	before, err := order.ParseCursor(c.Query("cursor"))
	if err != nil {
		server.Fail(c, err)
		return
	}
	limit, err := page.ParseLimit(c.Query("limit"))
	if err != nil {
		server.Fail(c, err)
		return
	}
	owner := claims.Subject
	if q, ok := c.GetQuery("user_id"); ok {
		if u, err := uuid.Parse(q); err != nil || u.String() != q {
			server.Fail(c, &problem.Error{Code: problem.Invalid, Message: "invalid user_id",
				Fields: []problem.FieldError{{Field: "user_id", Message: "must be a user id"}}})
			return
		}
		if q != claims.Subject && !order.IsStaff(claims) {
			authn.Deny(c, h.Events, secevent.ReasonRole)
			return
		}
		owner = q
	} else if order.IsStaff(claims) {
		owner = "" // everyone's
	}
	items, next, err := h.Orders.List(c.Request.Context(), owner, before, limit)
	if err != nil {
		server.Fail(c, err)
		return
	}
	out := list[order.Order]{Items: items}
	if next != "" {
		out.NextCursor = order.EncodeCursor(next)
	}
	noStore(c)
	c.JSON(http.StatusOK, out)
}

// get is GET /orders/{id}: the owner or staff. Anyone else is told the
// order does not exist, whether it does or not.
func (h handlers) get(c *gin.Context) {
	o, ok := h.visible(c)
	if !ok {
		return
	}
	noStore(c)
	c.JSON(http.StatusOK, o)
}

// cancel is POST /orders/{id}/cancel: the owner while the order is
// pending, staff whenever the state machine allows.
func (h handlers) cancel(c *gin.Context) {
	o, ok := h.visible(c)
	if !ok {
		return
	}
	claims := authn.Claims(c)
	if !order.CanCancel(claims, o) {
		// The owner sees the order but may no longer cancel it: a refund
		// after payment is a staff decision.
		authn.Deny(c, h.Events, secevent.ReasonRole)
		return
	}
	h.transition(c, o.ID, func(cur order.Order) (order.Status, error) {
		// Decided again on fresh data if the order changed meanwhile.
		if !order.CanCancel(claims, cur) {
			return "", errNotAllowed
		}
		return order.Cancelled, nil
	}, order.Cancelled)
}

// statusChange is the body of PATCH /orders/{id}: the status and nothing
// else (no total, no items, no owner).
type statusChange struct {
	Status string `json:"status"`
}

// patch is PATCH /orders/{id}: staff move an order through its states.
func (h handlers) patch(c *gin.Context) {
	var body statusChange
	if !server.BindJSON(c, &body) {
		return
	}
	to, ok := order.ParseStatus(body.Status)
	if !ok {
		server.Fail(c, &problem.Error{Code: problem.Invalid, Message: "invalid status",
			Fields: []problem.FieldError{{Field: "status", Message: "must be one of pending, paid, shipped, delivered, cancelled"}}})
		return
	}
	o, ok := h.visible(c)
	if !ok {
		return
	}
	h.transition(c, o.ID, func(order.Order) (order.Status, error) { return to, nil }, to)
}

var errNotAllowed = errors.New("not allowed")

// transition applies a state change decided by decide, refusing those the
// state machine does not allow with 409.
func (h handlers) transition(c *gin.Context, id string, decide store.Decide, to order.Status) {
	claims := authn.Claims(c)
	out, err := h.Orders.Transition(c.Request.Context(), id, claims.Subject, func(cur order.Order) (order.Status, error) {
		next, err := decide(cur)
		if err != nil {
			return "", err
		}
		if !order.CanTransition(cur.Status, next) {
			return "", &problem.Error{Code: problem.Conflict, Message: "an order that is " + string(cur.Status) + " cannot become " + string(to)}
		}
		return next, nil
	})
	switch {
	case errors.Is(err, errNotAllowed):
		authn.Deny(c, h.Events, secevent.ReasonRole)
	case errors.Is(err, order.ErrNotFound):
		server.Fail(c, problem.New(problem.NotFound, "no such resource"))
	case errors.Is(err, order.ErrConflict):
		server.Fail(c, problem.New(problem.Conflict, "the order is being changed by someone else; retry"))
	case err != nil:
		server.Fail(c, err)
	default:
		noStore(c)
		c.JSON(http.StatusOK, out)
	}
}

// visible loads the :id order if the caller may see it. Ids are UUIDs:
// anything else cannot name an order and gets a plain 404. An order the
// caller may not see is a 404 too, with access.denied/ownership.
func (h handlers) visible(c *gin.Context) (order.Order, bool) {
	id := c.Param("id")
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		server.Fail(c, problem.New(problem.NotFound, "no such resource"))
		return order.Order{}, false
	}
	o, err := h.Orders.Get(c.Request.Context(), id)
	if errors.Is(err, order.ErrNotFound) {
		server.Fail(c, problem.New(problem.NotFound, "no such resource"))
		return order.Order{}, false
	}
	if err != nil {
		server.Fail(c, err)
		return order.Order{}, false
	}
	if !order.CanView(authn.Claims(c), o) {
		authn.Deny(c, h.Events, secevent.ReasonOwnership)
		return order.Order{}, false
	}
	return o, true
}

// noStore keeps orders (personal data) out of shared caches.
func noStore(c *gin.Context) { c.Header("Cache-Control", "no-store") }
