// Command order-service runs Rampart's order service: the catalogue, orders
// and their ownership rules. See app.Run for what it wires together.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rampart-go/rampart/order-service/app"
)

func main() {
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
