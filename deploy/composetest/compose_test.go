package composetest

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	authapp "github.com/rampart-go/rampart/auth-service/app"
	"github.com/rampart-go/rampart/deploy/stack"
	gatewayapp "github.com/rampart-go/rampart/gateway/app"
	orderapp "github.com/rampart-go/rampart/order-service/app"
	"github.com/rampart-go/rampart/shared/config"
	userapp "github.com/rampart-go/rampart/user-service/app"
)

// repoRoot is the repository root, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func loadCompose(t testing.TB) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithName("rampart"), cli.WithEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker compose would refuse docker-compose.yml: %v", err)
	}
	return p
}

// rampartServices are the compose services running Rampart binaries.
var rampartServices = []string{stack.Gateway, stack.Auth, stack.User, stack.Order}

// loaders read each service's configuration as its main does.
var loaders = map[string]func(config.Lookup) error{
	stack.Gateway: func(l config.Lookup) error { _, err := gatewayapp.LoadConfig(l); return err },
	stack.Auth:    func(l config.Lookup) error { _, err := authapp.LoadConfig(l); return err },
	stack.User:    func(l config.Lookup) error { _, err := userapp.LoadConfig(l); return err },
	stack.Order:   func(l config.Lookup) error { _, err := orderapp.LoadConfig(l); return err },
}

func TestComposeHardening(t *testing.T) {
	p := loadCompose(t)
	oneShot := map[string]bool{"init": true}
	// The collector image is FROM scratch: nothing in it could run a
	// healthcheck (the compose file says so where it is defined).
	noHealthcheck := map[string]bool{"otel-collector": true}
	published := map[string]bool{"gateway": true, "grafana": true, "prometheus": true}

	for name, s := range p.Services {
		t.Run(name, func(t *testing.T) {
			if !s.ReadOnly {
				t.Error("read_only must be true")
			}
			if !slices.Equal(s.CapDrop, []string{"ALL"}) || len(s.CapAdd) > 0 {
				t.Errorf("cap_drop must be [ALL] and cap_add empty, got %v / %v", s.CapDrop, s.CapAdd)
			}
			if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("security_opt must hold no-new-privileges:true, got %v", s.SecurityOpt)
			}
			if s.Privileged {
				t.Error("privileged")
			}
			if s.User == "" || !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(s.User) {
				t.Errorf("user must be a numeric non-root uid, got %q", s.User)
			}
			if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes == 0 ||
				s.Deploy.Resources.Limits.NanoCPUs == 0 || s.Deploy.Resources.Limits.Pids == 0 {
				t.Error("deploy.resources.limits must set cpus, memory and pids")
			}
			if oneShot[name] {
				if s.Restart != "no" {
					t.Errorf("a one-shot service must not restart, got %q", s.Restart)
				}
			} else {
				if s.Restart != "unless-stopped" && s.Restart != "always" {
					t.Errorf("restart policy %q, want unless-stopped", s.Restart)
				}
				if !noHealthcheck[name] && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0) {
					t.Error("a long-running service needs a healthcheck")
				}
			}
			if s.NetworkMode != "" && s.NetworkMode != "none" {
				t.Errorf("network_mode %q", s.NetworkMode)
			}
			if s.Pid == "host" || s.Ipc == "host" {
				t.Error("host pid/ipc namespace")
			}
			for _, port := range s.Ports {
				if !published[name] {
					t.Errorf("only gateway, grafana and prometheus publish ports; %s publishes %d", name, port.Target)
				}
				if port.HostIP != "127.0.0.1" {
					t.Errorf("port %d published on %q, want 127.0.0.1", port.Target, port.HostIP)
				}
			}
			if published[name] && len(s.Ports) == 0 {
				t.Error("expected a published port")
			}
			for net := range s.Networks {
				if net != "internal" && !published[name] {
					t.Errorf("%s is on network %s: only services with a published port join edge", name, net)
				}
			}
			for _, v := range s.Volumes {
				if v.Type == types.VolumeTypeBind {
					if !v.ReadOnly {
						t.Errorf("bind mount %s must be read-only", v.Source)
					}
					if _, err := os.Stat(v.Source); err != nil {
						t.Errorf("mounted file missing from the repository: %v", err)
					}
					if v.Source == "/var/run/docker.sock" {
						t.Error("the Docker socket is mounted")
					}
				}
				if v.Source == "rampart-state" && !oneShot[name] && (!v.ReadOnly || v.Volume == nil || v.Volume.Subpath == "") {
					t.Errorf("rampart-state must be mounted read-only through the container's own subpath, got %+v", v)
				}
			}
			for dep, d := range s.DependsOn {
				want := types.ServiceConditionHealthy
				if oneShot[dep] {
					want = types.ServiceConditionCompletedSuccessfully
				}
				if noHealthcheck[dep] {
					want = types.ServiceConditionStarted
				}
				if d.Condition != want {
					t.Errorf("depends_on %s: condition %q, want %q", dep, d.Condition, want)
				}
			}
		})
	}

	if n, ok := p.Networks["internal"]; !ok || !n.Internal {
		t.Error("the internal network must be internal: true")
	}
	if _, ok := p.Networks["edge"]; !ok {
		t.Error("no edge network")
	}
	// Every Rampart service waits for init (directly or through a
	// dependency that does) and lives on the internal network only, except
	// the gateway.
	for _, name := range rampartServices {
		s := p.Services[name]
		if _, ok := s.Networks["internal"]; !ok {
			t.Errorf("%s is not on the internal network", name)
		}
		if s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, []string{"CMD", "/rampart", "healthcheck"}) {
			t.Errorf("%s: the healthcheck must run the binary's healthcheck subcommand", name)
		}
	}
}

// secretish matches values that look like credentials: a password in a
// URL, or a long random token.
var secretish = []*regexp.Regexp{
	regexp.MustCompile(`://[^/@\s]*:[^/@\s]+@`),
	regexp.MustCompile(`[A-Za-z0-9_\-+]{32,}`),
	regexp.MustCompile(`-----BEGIN`),
}

func TestComposeHasNoSecrets(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(raw), "\n") {
		for _, re := range secretish {
			if m := re.FindString(line); m != "" && !strings.Contains(m, "opentelemetry-collector") {
				t.Errorf("docker-compose.yml:%d looks like a secret: %q", i+1, m)
			}
		}
	}
	p := loadCompose(t)
	for name, s := range p.Services {
		for k, v := range s.Environment {
			upper := strings.ToUpper(k)
			// A path names where the secret is, in the init volume.
			if v == nil || strings.HasPrefix(*v, "/") {
				continue
			}
			if (strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "SECRET") || strings.Contains(upper, "TOKEN") ||
				strings.HasSuffix(upper, "_KEY")) && !strings.HasSuffix(upper, "_FILE") {
				t.Errorf("%s: %s is set in the compose file; secrets come from the init volume", name, k)
			}
		}
		if len(s.EnvFiles) > 0 {
			t.Errorf("%s: env_file; every variable must be visible in docker-compose.yml", name)
		}
	}
	if _, err := os.Stat(filepath.Join(repoRoot(t), ".env")); err == nil {
		t.Error("a .env file exists at the root")
	}
}

// TestComposeEnvironmentIsWhatServicesRead loads each Rampart service's
// configuration from its compose environment with the service's own
// LoadConfig, over the files `devstack init --compose` generates: every
// variable must be one the service reads (a typo would be silently
// ignored otherwise), none may be missing, and the values must agree with
// devstack's (allowlists, NATS with TLS, PostgreSQL URLs without passwords).
func TestComposeEnvironmentIsWhatServicesRead(t *testing.T) {
	p := loadCompose(t)
	state := t.TempDir()
	if err := stack.Prepare(state, stack.PrepareOptions{Compose: true}); err != nil {
		t.Fatal(err)
	}
	for _, name := range rampartServices {
		t.Run(name, func(t *testing.T) {
			s := p.Services[name]
			env := map[string]string{}
			for k, v := range s.Environment {
				if v != nil {
					env[k] = *v
				}
			}
			// The paths the container sees, mapped onto the generated state.
			local := func(v string) string {
				v = strings.ReplaceAll(v, "/rampart/secrets", stack.ComposeDir(state, name))
				return strings.ReplaceAll(v, "/var/lib/rampart/keys", filepath.Join(state, "keys"))
			}
			read := map[string]bool{}
			lookup := func(k string) (string, bool) {
				read[k] = true
				v, ok := env[k]
				return local(v), ok
			}
			if err := loaders[name](lookup); err != nil {
				t.Fatalf("the service refuses its compose environment:\n%v", err)
			}
			for k := range env {
				if !read[k] {
					t.Errorf("%s is not a variable %s reads", k, name)
				}
				if !strings.HasPrefix(k, "RAMPART_") && !strings.HasPrefix(k, "OTEL_") {
					t.Errorf("%s: only RAMPART_* and OTEL_* variables configure a service", k)
				}
			}
			callers := []string{}
			if v := env["RAMPART_ALLOWED_CALLERS"]; v != "" {
				callers = strings.Split(v, ",")
			}
			want := append([]string{}, stack.AllowedCallers[name]...)
			slices.Sort(callers)
			slices.Sort(want)
			if !slices.Equal(callers, want) {
				t.Errorf("RAMPART_ALLOWED_CALLERS %v, devstack's allowlist is %v", callers, want)
			}
			if !strings.HasPrefix(env["RAMPART_NATS_URL"], "tls://") {
				t.Errorf("RAMPART_NATS_URL %q must be tls://", env["RAMPART_NATS_URL"])
			}
			if env["RAMPART_INSECURE_DEV"] != "" || env["RAMPART_REQUIRE_CLIENT_CERT"] != "" {
				t.Error("compose must not weaken the defaults")
			}
			if dsn, ok := env["RAMPART_DATABASE_URL"]; ok {
				want, err := stack.PostgresDSN("postgres://"+stack.PostgresHost+":5432/?sslmode=verify-full&sslrootcert=/rampart/secrets/ca.crt",
					"", name, "/rampart/secrets/pgpass")
				if err != nil {
					t.Fatal(err)
				}
				if !sameDSN(dsn, want) {
					t.Errorf("RAMPART_DATABASE_URL %s, want %s (its own role and database, password from passfile)", dsn, want)
				}
			}
		})
	}
}

// sameDSN compares two URLs regardless of query order and escaping.
func sameDSN(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return false
	}
	return ua.Scheme == ub.Scheme && ua.User.String() == ub.User.String() && ua.Host == ub.Host && ua.Path == ub.Path &&
		ua.Query().Encode() == ub.Query().Encode()
}
