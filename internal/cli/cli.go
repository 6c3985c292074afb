// Package cli implements the ocisync command line: the subcommands and
// their flags. Each subcommand returns an exit code and writes its result
// to stdout and failures as one line to stderr.
package cli

import (
	"fmt"
	"io"
)

// Version is set at build time with
// -ldflags "-X github.com/ocisync/ocisync/internal/cli.Version=v1.2.3".
var Version = "dev"

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"manager", "run the Kubernetes controller manager", runManager},
		{"pull", "pull an artifact's files from a registry into a folder", runPull},
		{"push", "push files to a registry as an artifact", runPush},
		{"version", "print the version", runVersion},
	}
}

// Run dispatches args (without the program name) to a subcommand and
// returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ocisync: unknown command %q; run 'ocisync' with no arguments for the list of commands\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ocisync syncs OCI artifacts (ORAS-style files in an OCI registry) into Kubernetes.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w, "  ocisync <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s  %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ocisync <command> -h' for a command's flags.")
}

func runVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "ocisync %s\n", Version)
	return 0
}
