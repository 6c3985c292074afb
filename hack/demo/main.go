// Command ocisync-demo shows ocisync at work on this machine, for
// `make demo`: it starts etcd and kube-apiserver (controller-runtime's
// envtest) with the CRDs of config/crd, a Distribution registry on loopback
// that wants a password, publishes a sample artifact with `ocisync push`,
// runs `ocisync manager` as its own process, applies config/samples pointed
// at the local registry, waits until every Artifact is Ready and prints them
// with their ConfigMaps. Then it keeps running, printing each new sync,
// until SIGINT or SIGTERM, and stops every process and removes every file
// it made on the way out.
//
// It builds nothing: `make demo` builds the binaries and names them in the
// environment variables of `make test-env`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130 // a signal came before the demo was ready
)

// readyLine is printed once everything runs and every Artifact is Ready;
// test/demo waits for it.
const readyLine = "The demo is ready."

type options struct {
	exitWhenReady bool
	kubectl       string
	configDir     string
	readyTimeout  time.Duration
	interval      time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var opts options
	fs := flag.NewFlagSet("ocisync-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&opts.exitWhenReady, "exit-when-ready", false,
		"stop everything and exit 0 once every Artifact is Ready, instead of running until SIGINT or SIGTERM")
	fs.StringVar(&opts.kubectl, "kubectl", "kubectl",
		"kubectl to print the Artifacts and ConfigMaps with; when it is not found, or empty, the demo prints the same through the API")
	fs.StringVar(&opts.configDir, "config-dir", "config",
		"the repository's config folder, with crd/ and samples/ kustomizations")
	fs.DurationVar(&opts.readyTimeout, "ready-timeout", 3*time.Minute,
		"how long to wait for the Artifacts to become Ready")
	fs.DurationVar(&opts.interval, "interval", 5*time.Second,
		"spec.interval given to the sample Artifacts, so that a new push shows within seconds")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ocisync-demo [flags]\n\nRun by make demo, which builds the tools and sets their environment variables.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ocisync-demo: unexpected argument %q; it takes only flags (run it with -h)\n", fs.Arg(0))
		return exitUsage
	}
	if opts.interval < time.Second {
		fmt.Fprintf(stderr, "ocisync-demo: --interval is %s; give at least 1s\n", opts.interval)
		return exitUsage
	}

	// Until the end of run, SIGINT and SIGTERM only cancel ctx: a second
	// Ctrl-C while stopping must not leave processes or files behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := &demo{out: stdout, opts: opts}
	err := d.run(ctx)
	ready := d.ready
	cleanupErr := d.cleanup()

	code := exitOK
	switch {
	case err != nil && ctx.Err() != nil && !ready:
		fmt.Fprintln(stderr, "ocisync-demo: interrupted before the demo was ready")
		code = exitInterrupted
	case err != nil && ctx.Err() == nil:
		fmt.Fprintf(stderr, "ocisync-demo: %v\n", err)
		code = exitFailed
	}
	if cleanupErr != nil {
		fmt.Fprintf(stderr, "ocisync-demo: cleaning up: %v\n", cleanupErr)
		code = exitFailed
	}
	return code
}
