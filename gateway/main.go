// Command gateway runs Rampart's edge: the only public door. See app.Run.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rampart-go/rampart/gateway/app"
	"github.com/rampart-go/rampart/shared/healthcheck"
)

func main() {
	// `gateway healthcheck` probes the running service (the image has no curl).
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command {
		os.Exit(healthcheck.Main(context.Background(), os.LookupEnv, "127.0.0.1:9181", os.Args[2:], os.Stderr))
	}
	app.TuneGC(os.LookupEnv) // GOGC 400 unless GOGC or GOMEMLIMIT is set
	cfg, err := app.LoadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: configuration:\n%v\n", err)
		os.Exit(2)
	}
	if err := app.Run(context.Background(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(1)
	}
}
