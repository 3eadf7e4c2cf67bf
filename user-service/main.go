// Command user-service runs Rampart's user service: profiles (the PII),
// erasure and admin listing. See app.Run for what it wires together.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rampart-go/rampart/shared/healthcheck"
	"github.com/rampart-go/rampart/user-service/app"
)

func main() {
	// `user-service healthcheck` probes the running service (the image has no curl).
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command {
		os.Exit(healthcheck.Main(context.Background(), os.LookupEnv, "127.0.0.1:9183", os.Args[2:], os.Stderr))
	}
	cfg, err := app.LoadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "user-service: configuration:\n%v\n", err)
		os.Exit(2)
	}
	if err := app.Run(context.Background(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "user-service: %v\n", err)
		os.Exit(1)
	}
}
