// Command gateway runs Rampart's edge: the only public door. See app.Run.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/rampart-go/rampart/gateway/app"
)

func main() {
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
