// Package healthcheck is the `healthcheck` subcommand every Rampart binary
// has: it asks the running service's ops listener for /readyz (or /healthz
// with --live) and turns the answer into an exit code. Container images are
// distroless, with no shell or curl, so a Docker HEALTHCHECK runs the service
// binary itself: `HEALTHCHECK CMD ["/rampart", "healthcheck"]`.
package healthcheck

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Command is the subcommand name main looks for in os.Args[1].
const Command = "healthcheck"

// Lookup has os.LookupEnv's signature.
type Lookup func(string) (string, bool)

// Main runs the subcommand with args (what follows "healthcheck") and
// returns the process exit code: 0 when the probe answered 200, 1 when it
// answered anything else or not at all, 2 for bad arguments. The ops address
// is RAMPART_OPS_ADDR, as the service itself reads it, or defaultOpsAddr;
// an address without a host (":9181", "0.0.0.0:9181") is probed on
// loopback, since the probe runs inside the service's own container.
func Main(ctx context.Context, lookup Lookup, defaultOpsAddr string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	live := fs.Bool("live", false, "probe /healthz (the process is alive) instead of /readyz (it can serve)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	addrFlag := fs.String("addr", "", "ops listener address (default: RAMPART_OPS_ADDR, else "+defaultOpsAddr+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr := *addrFlag
	if addr == "" {
		if v, ok := lookup("RAMPART_OPS_ADDR"); ok && v != "" {
			addr = v
		} else {
			addr = defaultOpsAddr
		}
	}
	target, err := ProbeURL(addr, *live)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 2
	}
	if err := Probe(ctx, target, *timeout); err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	return 0
}

// ProbeURL turns an ops listener address into the URL to probe.
func ProbeURL(addr string, live bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("ops address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	path := "/readyz"
	if live {
		path = "/healthz"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// Probe GETs target and returns nil only for a 200 answer within timeout.
func Probe(ctx context.Context, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	// A fresh transport without proxies: HTTP_PROXY in a container's
	// environment must not send the probe elsewhere.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", target, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d", target, resp.StatusCode)
	}
	return nil
}
