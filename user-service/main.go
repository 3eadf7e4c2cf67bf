// Command user-service runs Rampart's user service: profiles (the PII),
// erasure and admin listing. See app.Run for what it wires together.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rampart-go/rampart/user-service/app"
)

func main() {
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
