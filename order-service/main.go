// Command order-service runs Rampart's order service: the catalogue, orders
// and their ownership rules. See app.Run for what it wires together.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rampart-go/rampart/order-service/app"
	"github.com/rampart-go/rampart/shared/healthcheck"
)

func main() {
	// `order-service healthcheck` probes the running service (the image has no curl).
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command {
		os.Exit(healthcheck.Main(context.Background(), os.LookupEnv, "127.0.0.1:9184", os.Args[2:], os.Stderr))
	}
	cfg, err := app.LoadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "order-service: configuration:\n%v\n", err)
		os.Exit(2)
	}
	if err := app.Run(context.Background(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "order-service: %v\n", err)
		os.Exit(1)
	}
}
