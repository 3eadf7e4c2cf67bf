// Command rampart-load runs a load-test scenario against a running
// Rampart (make run) and writes its summary under deploy/loadtest/results:
//
//	go run ./deploy/loadtest/cmd/rampart-load load -duration 60s
//	go run ./deploy/loadtest/cmd/rampart-load rotate-keys
//
// The gateway URL, the CA to trust and the demo credentials come from
// .devstack/endpoints.json and credentials.json (-dir); -base-url and -ca
// override the first two. -stack starts a fresh in-process stack instead.
// The exit code is 1 when a threshold fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-go/rampart/deploy/loadtest"
	"github.com/rampart-go/rampart/deploy/stack"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "rampart-load: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("rampart-load", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: rampart-load [flags] %s | rotate-keys | list\n", strings.Join(loadtest.ScenarioNames(), " | "))
		fs.PrintDefaults()
	}
	dir := fs.String("dir", ".devstack", "devstack state directory (endpoints.json, credentials.json)")
	baseURL := fs.String("base-url", "", "gateway URL (default: endpoints.json's gateway)")
	ca := fs.String("ca", "", "CA file to trust (default: endpoints.json's ca_file)")
	rate := fs.Float64("rate", 0, "peak arrival rate, iterations/s (default: the scenario's)")
	duration := fs.Duration("duration", 0, "main phase length (soak: the whole soak; default: the scenario's)")
	users := fs.Int("users", 0, "simulated users signed in up front (default: the scenario's)")
	inflight := fs.Int("max-in-flight", 0, "concurrent iterations at most (default: the scenario's)")
	results := fs.String("results", "deploy/loadtest/results", "directory for the JSON and Markdown summaries")
	inProcess := fs.Bool("stack", false, "start a fresh in-process stack (ephemeral ports, temporary state) and test that")
	quiet := fs.Bool("q", false, "no progress lines")
	// Flags may follow the scenario name too.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if name == "list" {
		for _, n := range loadtest.ScenarioNames() {
			fmt.Printf("%-6s %s\n", n, loadtest.Scenarios()[n].About)
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var log io.Writer = os.Stderr
	if *quiet {
		log = io.Discard
	}
	var target loadtest.Target
	if *inProcess {
		tmp, err := os.MkdirTemp("", "rampart-load-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		s, err := stack.Start(ctx, stack.Options{Dir: tmp, Ephemeral: true, LogWriter: io.Discard})
		if err != nil {
			return fmt.Errorf("start stack: %w", err)
		}
		defer s.Stop()
		target = loadtest.FromEndpoints(s.Endpoints, s.Credentials)
		fmt.Fprintf(log, "in-process stack ready: %s\n", target.BaseURL)
	} else {
		var err error
		if target, err = loadtest.LoadTarget(*dir, *baseURL, *ca); err != nil {
			return err
		}
	}

	if name == "rotate-keys" {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := loadtest.RotateKeys(ctx, target); err != nil {
			return err
		}
		fmt.Println("signing key rotated")
		return nil
	}
	sc, ok := loadtest.Scenarios()[name]
	if !ok {
		fs.Usage()
		return fmt.Errorf("unknown scenario %q", name)
	}
	fmt.Fprintf(log, "%s against %s: %s\n", sc.Name, target.BaseURL, sc.About)
	env := loadtest.NewEnv(target, log)
	sum, runErr := loadtest.Execute(ctx, sc, env, loadtest.Options{Rate: *rate, Duration: *duration, Users: *users, MaxInFlight: *inflight})
	jsonPath, mdPath, err := loadtest.WriteResults(*results, sum)
	if err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Print(sum.Markdown())
	fmt.Printf("\nresults: %s, %s\n", jsonPath, mdPath)
	if runErr != nil {
		return runErr
	}
	if !sum.Passed {
		return errors.New("thresholds failed")
	}
	return nil
}
