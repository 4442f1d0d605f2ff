// Command meshtracectl manages MeshTrace policies on a meshtrace control plane.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshtrace/meshtrace/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := &cli.App{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	code := app.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
