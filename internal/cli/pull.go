package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

// Values of pull's --layout flag.
const (
	layoutPlain     = "plain"
	layoutVersioned = "versioned"
)

func runPull(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	var rf registryFlags
	rf.register(fs)
	mediaType := fs.String("media-type", "", "pull only layers of this media type (default: every layer with a title)")
	platform := fs.String("platform", "", "os/arch[/variant] to pick from an image index (default: its only entry)")
	layout := fs.String("layout", layoutPlain, "how DIR is written: \""+layoutPlain+"\" puts the files in DIR; \""+layoutVersioned+"\" treats DIR as a volume root, writes each version to DIR/.ocisync/<digest-hex>/, atomically points the symlink DIR/current at it and keeps only the previous version besides")
	extract := fs.Bool("extract", false, "also unpack tar and tar+gzip layers that lack ORAS's unpack annotation, into a folder named by their title")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: ocisync pull [flags] REFERENCE DIR")
		fmt.Fprintln(fs.Output(), "\nWrites each layer of the artifact to DIR under its title and prints the manifest digest last.")
		fmt.Fprintln(fs.Output(), "DIR is left as it was if anything fails. With --layout versioned, readers use DIR/current/,")
		fmt.Fprintln(fs.Output(), "which never shows a half-written version.\n\nFlags:")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 2 {
		fmt.Fprintf(stderr, "ocisync pull: want REFERENCE and DIR, got %d arguments (run 'ocisync pull -h' for usage)\n", fs.NArg())
		return 2
	}
	if *layout != layoutPlain && *layout != layoutVersioned {
		fmt.Fprintf(stderr, "ocisync pull: --layout is %q; want %q or %q\n", *layout, layoutPlain, layoutVersioned)
		return 2
	}
	ref, err := reference.Parse(fs.Arg(0))
	if err != nil {
		return fail(stderr, "pull", err)
	}
	ref = ref.WithDefaultTag()
	var plat *oci.Platform
	if *platform != "" {
		p, err := oci.ParsePlatform(*platform)
		if err != nil {
			return fail(stderr, "pull", err)
		}
		plat = &p
	}
	client, err := rf.client()
	if err != nil {
		return fail(stderr, "pull", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := oci.PullOptions{
		Platform:  plat,
		MediaType: *mediaType,
		Extract:   *extract,
	}
	pull := client.Repository(ref).PullToDir
	if *layout == layoutVersioned {
		pull = client.Repository(ref).PullToVolume
	}
	res, err := pull(ctx, ref.Reference(), fs.Arg(1), opts)
	if err != nil {
		return fail(stderr, "pull", err)
	}
	for _, f := range res.Files {
		fmt.Fprintf(stdout, "Pulled %s\n", f)
	}
	fmt.Fprintln(stdout, res.Target.Root.Digest)
	return 0
}
