package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/telemetry"
)

func newTestEngine(t *testing.T, logs io.Writer) *gin.Engine {
	t.Helper()
	tel, err := telemetry.New(context.Background(), telemetry.Options{Service: "test", LogWriter: logs})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Options{Telemetry: tel, MaxBodyBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	e.GET("/panic", func(*gin.Context) { panic("boom") })
	e.GET("/fail", func(c *gin.Context) { Fail(c, problem.New(problem.Conflict, "already exists")) })
	e.GET("/internal-error", func(c *gin.Context) { Fail(c, errors.New("db password is hunter2")) })
	e.POST("/echo", func(c *gin.Context) {
		var in struct {
			Name string `json:"name"`
		}
		if !BindJSON(c, &in) {
			return
		}
		c.JSON(http.StatusOK, in)
	})
	return e
}

func do(e http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder) problem.Problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, body %s", ct, rec.Body)
	}
	var p problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestErrorsAreProblemJSON: every failure the engine produces is RFC 9457
// with the request id, and internal detail never reaches the client.
func TestErrorsAreProblemJSON(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	e := newTestEngine(t, &logs)
	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"a panic becomes a 500 and the process lives", "GET", "/panic", "", 500},
		{"a domain error keeps its status", "GET", "/fail", "", 409},
		{"an unexpected error is a generic 500", "GET", "/internal-error", "", 500},
		{"an unknown route is 404", "GET", "/nope", "", 404},
		{"a known route with the wrong method is 405", "DELETE", "/fail", "", 405},
		{"an unknown JSON field is 400", "POST", "/echo", `{"name":"a","admin":true}`, 400},
		{"a duplicate JSON key is 400", "POST", "/echo", `{"name":"a","name":"b"}`, 400},
		{"a case-variant JSON key is 400", "POST", "/echo", `{"NAME":"a"}`, 400},
		{"trailing data is 400", "POST", "/echo", `{"name":"a"} {}`, 400},
		{"a body over the limit is 413", "POST", "/echo", `{"name":"` + strings.Repeat("a", 100) + `"}`, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(e, tc.method, tc.path, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			p := decodeProblem(t, rec)
			if p.Status != tc.status || p.RequestID == "" || p.RequestID != rec.Header().Get(HeaderRequestID) {
				t.Errorf("problem %+v does not carry status and request id", p)
			}
			if strings.Contains(rec.Body.String(), "hunter2") || strings.Contains(rec.Body.String(), "boom") {
				t.Errorf("internal detail leaked: %s", rec.Body)
			}
		})
	}
	if !strings.Contains(logs.String(), "hunter2") || !strings.Contains(logs.String(), "panic in handler") {
		t.Error("internal errors and panics must be logged with their cause")
	}
	if rec := do(e, "POST", "/echo", `{"name":"ok"}`); rec.Code != 200 {
		t.Errorf("a valid body was refused: %d %s", rec.Code, rec.Body)
	}
}

// TestRequestIDs: a well-formed incoming id is kept (the gateway's, over
// mTLS); anything else is replaced.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t, io.Discard)
	for _, tc := range []struct {
		name, in string
		kept     bool
	}{
		{"a well-formed id is kept", "0123456789abcdef0123456789abcdef", true},
		{"a header-injection attempt is replaced", "abc\r\nX-Evil: 1", false},
		{"an overlong id is replaced", strings.Repeat("a", 65), false},
		{"a missing id is generated", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/fail", nil)
			if tc.in != "" {
				req.Header[HeaderRequestID] = []string{tc.in}
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			got := rec.Header().Get(HeaderRequestID)
			if (got == tc.in) != tc.kept || !ValidRequestID(got) {
				t.Errorf("request id %q for input %q", got, tc.in)
			}
		})
	}
}

// TestReadinessReflectsChecks: /readyz fails, naming the check, while a
// dependency is down, and /metrics serves the registry.
func TestReadinessReflectsChecks(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(context.Background(), telemetry.Options{Service: "test", LogWriter: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(tel.Registry); err != nil {
		t.Fatal(err)
	}
	var down bool
	h := OpsHandler(tel.Registry, func() []Check {
		return []Check{{Name: "database", Fn: func(context.Context) error {
			if down {
				return errors.New("connection refused")
			}
			return nil
		}}}
	})
	if rec := do(h, "GET", "/readyz", ""); rec.Code != 200 {
		t.Fatalf("ready: %d", rec.Code)
	}
	down = true
	rec := do(h, "GET", "/readyz", "")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"database"`) || strings.Contains(rec.Body.String(), "refused") {
		t.Fatalf("not ready: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, "GET", "/healthz", ""); rec.Code != 200 {
		t.Fatalf("healthz: %d", rec.Code)
	}
	if rec := do(h, "GET", "/metrics", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatalf("metrics: %d", rec.Code)
	}
}
