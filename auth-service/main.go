// Command auth-service runs Rampart's OAuth 2.1 / OpenID Connect
// authorization server. See app.Run for what it wires together.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rampart-go/rampart/auth-service/app"
)

func main() {
	cfg, err := app.LoadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "auth-service: configuration:\n%v\n", err)
		os.Exit(2)
	}
	if err := app.Run(context.Background(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "auth-service: %v\n", err)
		os.Exit(1)
	}
}
