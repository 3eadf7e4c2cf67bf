package k6check

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// k6Dir and the route table, relative to this package's directory.
var (
	k6Dir      = filepath.Join("..", "k6")
	routeTable = filepath.Join("..", "..", "gateway", "internal", "route", "route.go")
	edgeFile   = filepath.Join("..", "..", "gateway", "internal", "httpapi", "handler.go")
)

// scenarios are the scripts users run.
var scenarios = []string{"smoke.js", "load.js", "spike.js", "soak.js", "abuse.js"}

// scripts returns every script: the scenarios and the shared library.
func scripts(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"*.js", filepath.Join("lib", "*.js")} {
		m, err := filepath.Glob(filepath.Join(k6Dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) < len(scenarios) {
		t.Fatalf("found only %d scripts under %s", len(out), k6Dir)
	}
	return out
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // G304: the paths are this repository's files
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTypeCheck runs TypeScript over the scripts against @types/k6, as
// `npx tsc -p deploy/k6` does (the locally installed compiler, never a
// download at test time). Without deploy/k6/node_modules it skips, unless
// RAMPART_REQUIRE_K6_TYPES=1 (CI), where it fails.
func TestTypeCheck(t *testing.T) {
	tsc := filepath.Join(k6Dir, "node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		msg := "deploy/k6/node_modules is not installed: run `npm ci --prefix deploy/k6` (or `make k6-check`) to type-check the k6 scripts"
		if os.Getenv("RAMPART_REQUIRE_K6_TYPES") == "1" {
			t.Fatal(msg + " (RAMPART_REQUIRE_K6_TYPES=1)")
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("deploy/k6/node_modules exists but node is not on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tsc, "-p", k6Dir, "--pretty", "false") //nolint:gosec // G204: the repository's own pinned compiler
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("tsc -p deploy/k6: %v\n%s", err, out.String())
	}
}

var (
	exportOptions = regexp.MustCompile(`(?m)^export const options\b`)
	exportDefault = regexp.MustCompile(`(?m)^export default (async )?function\b`)
	exportSummary = regexp.MustCompile(`(?m)^export (const|function) handleSummary\b`)
)

// TestScenarioShape: every scenario is type-checked (@ts-check), exports
// options, a default function and handleSummary, and no script turns TLS
// verification off.
func TestScenarioShape(t *testing.T) {
	for _, name := range scenarios {
		src := read(t, filepath.Join(k6Dir, name))
		if !strings.HasPrefix(src, "// @ts-check\n") {
			t.Errorf("%s: does not start with // @ts-check", name)
		}
		if !exportOptions.MatchString(src) {
			t.Errorf("%s: does not export options", name)
		}
		if !exportDefault.MatchString(src) {
			t.Errorf("%s: does not export a default function", name)
		}
		if !exportSummary.MatchString(src) {
			t.Errorf("%s: does not export handleSummary", name)
		}
	}
	for _, path := range scripts(t) {
		if strings.Contains(read(t, path), "insecureSkipTLSVerify") {
			t.Errorf("%s: mentions insecureSkipTLSVerify: trust the dev CA through SSL_CERT_FILE instead", path)
		}
	}
}

// route is one entry of the gateway's route table.
type route struct {
	path string
}

// gatewayRoutes reads the route table's paths from its source: the
// package is internal to the gateway module, so it is parsed, not imported.
func gatewayRoutes(t *testing.T) []route {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), routeTable, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []route
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "Table" || len(vs.Values) != 1 {
			return true
		}
		list, ok := vs.Values[0].(*ast.CompositeLit)
		if !ok {
			t.Fatalf("%s: Table is not a composite literal", routeTable)
		}
		for _, el := range list.Elts {
			lit, ok := el.(*ast.CompositeLit)
			if !ok {
				continue
			}
			var r route
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if key, ok := kv.Key.(*ast.Ident); ok && key.Name == "Path" {
					r.path = unquote(t, kv.Value)
				}
			}
			if r.path != "" {
				out = append(out, r)
			}
		}
		return false
	})
	if len(out) < 5 {
		t.Fatalf("%s: found only %d routes in Table", routeTable, len(out))
	}
	return out
}

func unquote(t *testing.T, e ast.Expr) string {
	t.Helper()
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		t.Fatalf("%s: expected a string literal, got %T", routeTable, e)
	}
	s, err := strconv.Unquote(bl.Value)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// match is route.Match: exact, or the longest prefix ending in "/" that
// the path extends.
func match(table []route, path string) (route, bool) {
	var best route
	found := false
	for _, r := range table {
		switch {
		case r.path == path:
			return r, true
		case strings.HasSuffix(r.path, "/") && strings.HasPrefix(path, r.path) && len(path) > len(r.path):
			if !found || len(r.path) > len(best.path) {
				best, found = r, true
			}
		}
	}
	return best, found
}

// pathLiteral finds string and template literals that start with a path:
// the path's static characters, then what ends them (a quote, "?" for a
// query, or "$" where a template literal goes on with ${…}).
var pathLiteral = regexp.MustCompile("['\"`](/[A-Za-z0-9._~/-]+)([?'\"`$])")

// edgePaths are answered by the gateway itself, not routed
// (gateway/internal/httpapi/handler.go).
var edgePaths = []string{"/healthz", "/readyz"}

// TestRoutesExist: every path the scripts call exists in the gateway's
// route table (or is one the gateway answers itself), so a renamed route
// breaks this test and not a user's k6 run.
func TestRoutesExist(t *testing.T) {
	table := gatewayRoutes(t)
	edge := read(t, edgeFile)
	for _, p := range edgePaths {
		if !strings.Contains(edge, strconv.Quote(p)) {
			t.Errorf("%s no longer answers %s itself", edgeFile, p)
		}
	}
	seen := map[string]bool{}
	for _, file := range scripts(t) {
		for _, m := range pathLiteral.FindAllStringSubmatch(read(t, file), -1) {
			p := m[1]
			if m[2] == "$" {
				// A template literal with an id after the static part:
				// stand in for the id as route matching sees it.
				p += "id"
			}
			seen[p] = true
			if contains(edgePaths, p) {
				continue
			}
			if _, ok := match(table, p); !ok {
				t.Errorf("%s: path %s is in no gateway route (%s)", file, p, routeTable)
			}
		}
	}
	paths := make([]string, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	t.Logf("paths in the scripts: %s", strings.Join(paths, " "))
	// The scripts call at least these; fewer means the scan stopped seeing them.
	for _, want := range []string{"/oauth2/authorize", "/oauth2/token", "/login", "/api/v1/auth/register", "/api/v1/catalog",
		"/api/v1/orders", "/api/v1/orders/id", "/api/v1/users/me", "/.well-known/jwks.json"} {
		if !seen[want] {
			t.Errorf("the scan did not find %s in the scripts", want)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
