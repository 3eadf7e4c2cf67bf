package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Process mode (Options.Processes): each service runs in a child process of
// its own, as it would in its own container — its own heap and RSS, its
// own crash — while devstack keeps the PKI, the embedded NATS server and the
// listeners. The child is devstack itself (`devstack service`), so `make
// run` still builds one binary.
//
// The parent binds every listener, as in one-process mode, and hands a
// service its two sockets as inherited file descriptors 3 (API) and 4
// (ops); the child reads every other address from its spec, so it is
// configured exactly as the in-process service would be. The child's stdin
// is a pipe from the parent: when the parent dies, however it dies, the
// pipe closes and the child shuts down instead of living on as an orphan.

// ChildCommand is the devstack subcommand that runs one service (ServeChild).
const ChildCommand = "service"

// childSpecEnv carries a child's spec (JSON). It holds addresses and
// settings, no secrets: the child reads those from the state directory,
// which is the parent's and mode 0700.
const childSpecEnv = "RAMPART_DEVSTACK_CHILD"

// childSpec is what a child needs to configure its one service.
type childSpec struct {
	Service            string            `json:"service"`
	Dir                string            `json:"dir"`
	Addrs              map[string]string `json:"addrs"` // every listener, concrete
	NATSURL            string            `json:"nats_url"`
	Postgres           string            `json:"postgres,omitempty"`
	PostgresPrefix     string            `json:"postgres_prefix,omitempty"`
	OTLPEndpoint       string            `json:"otlp_endpoint,omitempty"`
	AuthRatePerMinute  int               `json:"auth_rate_per_minute,omitempty"`
	AuthRateBurst      int               `json:"auth_rate_burst,omitempty"`
	CertReloadInterval time.Duration     `json:"cert_reload_interval,omitempty"`
}

// childState marks a Start call as a child's: run only service, on the
// inherited listeners.
type childState struct {
	service   string
	listeners map[string]net.Listener
}

// childStopGrace is how long a child has to shut down after SIGTERM: the
// services' own shutdown timeout (10 s) and a margin.
const childStopGrace = 15 * time.Second

// IsChild reports whether this process was started as a service child
// (for devstack's main, which must not parse its usual flags then).
func IsChild(args []string) bool {
	return len(args) > 0 && args[0] == ChildCommand && os.Getenv(childSpecEnv) != ""
}

// ServeChild runs the one service a parent in process mode started this
// process for, until ctx ends or the parent goes away, and returns its
// error. It is devstack's `service` subcommand.
func ServeChild(ctx context.Context) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(childSpecEnv)), &spec); err != nil {
		return fmt.Errorf("child spec: %w", err)
	}
	if !slices.Contains(Services, spec.Service) {
		return fmt.Errorf("child spec: unknown service %q", spec.Service)
	}
	listeners := map[string]net.Listener{}
	for i, key := range []string{spec.Service, spec.Service + "-ops"} {
		f := os.NewFile(uintptr(3+i), key)
		if f == nil {
			return fmt.Errorf("child: no inherited listener for %s", key)
		}
		l, err := net.FileListener(f)
		_ = f.Close() // FileListener holds its own duplicate
		if err != nil {
			return fmt.Errorf("child: listener for %s: %w", key, err)
		}
		listeners[key] = l
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Returns when the parent closes the pipe or exits.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	s, err := Start(ctx, Options{
		Dir: spec.Dir, Addrs: spec.Addrs, NATSURL: spec.NATSURL,
		Postgres: spec.Postgres, PostgresPrefix: spec.PostgresPrefix, OTLPEndpoint: spec.OTLPEndpoint,
		AuthRatePerMinute: spec.AuthRatePerMinute, AuthRateBurst: spec.AuthRateBurst,
		CertReloadInterval: spec.CertReloadInterval,
		child:              &childState{service: spec.Service, listeners: listeners},
	})
	if err != nil {
		return err
	}
	s.Wait()
	return s.Err()
}

// processRunner returns the managed function that runs name in a child
// process: it hands the child the service's current listeners, waits for
// it to exit, and stops it with SIGTERM (then SIGKILL after
// childStopGrace) when ctx ends.
func (s *Stack) processRunner(o Options, name string, spec childSpec, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		specJSON, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		var files []*os.File
		defer func() {
			for _, f := range files {
				_ = f.Close()
			}
		}()
		for _, key := range []string{name, name + "-ops"} {
			l, ok := s.ctl.listener(key).(*net.TCPListener)
			if !ok {
				return fmt.Errorf("%s: listener is not TCP", key)
			}
			f, err := l.File()
			if err != nil {
				return fmt.Errorf("%s: listener file: %w", key, err)
			}
			files = append(files, f)
			// The child owns the socket now; the parent's copy would
			// keep the address bound after the child exits.
			_ = l.Close()
		}
		cmd := exec.CommandContext(ctx, o.Executable, ChildCommand) //nolint:gosec // G204: our own executable, fixed arguments
		// When ctx ends: SIGTERM (a graceful shutdown), then SIGKILL if
		// the child is still there after childStopGrace.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = childStopGrace
		cmd.Env = append(os.Environ(), childSpecEnv+"="+string(specJSON))
		cmd.ExtraFiles = files
		cmd.SysProcAttr = childProcAttr()
		cmd.Stdout, cmd.Stderr = o.LogWriter, o.LogWriter
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		defer stdin.Close()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		log.Info("service process started", slog.String("name", name), slog.Int("pid", cmd.Process.Pid))
		s.setPID(name, cmd.Process.Pid)

		err = cmd.Wait()
		switch {
		case ctx.Err() == nil && err == nil:
			return fmt.Errorf("process %d exited", cmd.Process.Pid)
		case ctx.Err() == nil:
			return fmt.Errorf("process %d: %w", cmd.Process.Pid, err)
		case errors.Is(err, exec.ErrWaitDelay) || killed(cmd.ProcessState):
			return fmt.Errorf("process %d did not stop within %s of SIGTERM; killed", cmd.Process.Pid, childStopGrace)
		default:
			return nil // stopped as asked
		}
	}
}

// PIDs returns the process id of each service's child in process mode
// (empty in one-process mode), for measuring each service on its own.
func (s *Stack) PIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.pids))
	for k, v := range s.pids {
		out[k] = v
	}
	return out
}

func (s *Stack) setPID(name string, pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pids == nil {
		s.pids = map[string]int{}
	}
	s.pids[name] = pid
}

// writePIDs writes DIR/pids.json in process mode: each service's process
// id, for tools that measure one service (ps, /proc/PID/status, pprof).
func (s *Stack) writePIDs() error {
	return writeJSON(filepath.Join(s.Dir, "pids.json"), s.PIDs(), 0o644)
}
