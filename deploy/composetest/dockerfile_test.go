package composetest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

type instruction struct {
	cmd   string
	args  []string
	flags []string
	line  int
}

func parseDockerfile(t testing.TB, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("BuildKit refuses %s: %v", path, err)
	}
	var out []instruction
	for _, n := range res.AST.Children {
		in := instruction{cmd: strings.ToUpper(n.Value), flags: n.Flags, line: n.StartLine}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		out = append(out, in)
	}
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	var froms []instruction
	final := -1
	for i, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in)
			final = i
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got %d FROM", len(froms))
	}
	for _, f := range froms {
		if strings.Contains(f.args[0], "$") || !strings.Contains(f.args[0], ":") || strings.HasSuffix(f.args[0], ":latest") {
			t.Errorf("line %d: FROM %s must pin a tag", f.line, f.args[0])
		}
	}
	runtime := froms[len(froms)-1].args[0]
	if !strings.HasPrefix(runtime, "gcr.io/distroless/static") && runtime != "scratch" {
		t.Errorf("runtime base %s: want distroless static or scratch", runtime)
	}

	secretName := regexp.MustCompile(`(?i)(PASSWORD|SECRET|TOKEN|_KEY\b|PRIVATE|CREDENTIAL)`)
	var user, health, entrypoint *instruction
	labels := map[string]bool{}
	trimpath := false
	for i := range ins {
		in := &ins[i]
		switch in.cmd {
		case "ADD":
			for _, a := range in.args {
				if strings.Contains(a, "://") || strings.HasPrefix(a, "git@") {
					t.Errorf("line %d: ADD from a URL (%s): fetch nothing unpinned at build time", in.line, a)
				}
			}
		case "ENV", "ARG":
			for _, a := range in.args {
				name, _, _ := strings.Cut(a, "=")
				if secretName.MatchString(name) {
					t.Errorf("line %d: %s %s looks like a secret; images carry none", in.line, in.cmd, name)
				}
			}
		case "RUN":
			if strings.Contains(strings.Join(in.args, " "), "-trimpath") {
				trimpath = true
			}
		}
		if i < final {
			continue
		}
		switch in.cmd {
		case "USER":
			user = in
		case "HEALTHCHECK":
			health = in
		case "ENTRYPOINT":
			entrypoint = in
		case "LABEL":
			for j := 0; j+1 < len(in.args); j += 3 {
				labels[in.args[j]] = true
			}
		}
	}
	if !trimpath {
		t.Error("go build must use -trimpath")
	}
	if user == nil || !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(user.args[0]) {
		t.Errorf("the runtime stage must run as a numeric non-root USER, got %+v", user)
	}
	if health == nil || !strings.Contains(strings.Join(health.args, " "), "/rampart") ||
		!strings.Contains(strings.Join(health.args, " "), "healthcheck") {
		t.Errorf("HEALTHCHECK must run the binary's healthcheck subcommand, got %+v", health)
	}
	if entrypoint == nil || !strings.Contains(strings.Join(entrypoint.args, " "), "/rampart") {
		t.Errorf("ENTRYPOINT must be the binary, got %+v", entrypoint)
	}
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version",
		"org.opencontainers.image.revision", "org.opencontainers.image.licenses"} {
		if !labels[l] {
			t.Errorf("missing OCI label %s (have %v)", l, labels)
		}
	}
}

func TestDockerignore(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			have[l] = true
		}
	}
	for _, want := range []string{".git", ".devstack/", "**/.devstack", "bin/", "**/*.key", "**/*.pem", "**/secrets.json", "**/credentials.json", "**/.env"} {
		if !have[want] {
			t.Errorf(".dockerignore must exclude %s", want)
		}
	}
	// A pattern that would drop source the build needs.
	for p := range have {
		if p == "**/keys/" || p == "**/keys" || p == "*.go" {
			t.Errorf(".dockerignore pattern %s drops Go packages (auth-service/internal/keys)", p)
		}
	}
}
