// Command ocisync syncs OCI artifacts into Kubernetes. One binary carries
// the controller manager and the pull/push commands; see internal/cli.
package main

import (
	"os"

	"github.com/ocisync/ocisync/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
