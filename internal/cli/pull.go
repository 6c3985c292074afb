package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

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
	layout := fs.String("layout", layoutPlain, "how DIR is written: \""+layoutPlain+"\" puts the files in DIR; \""+layoutVersioned+"\" treats DIR as a volume root, writes each version to DIR/.ocisync/<digest-hex>/ (<digest-hex>-<options-hash>/ with --media-type, --platform or --extract), atomically points the symlink DIR/current at it and keeps only the previous version besides; pulls into one DIR wait for each other")
	extract := fs.Bool("extract", false, "also unpack layers whose media type says tar and whose content is a tar or tar+gzip archive, into a folder named by their title; other layers, such as files ORAS pushed under its default tar media type, are written as files")
	maxSize := fs.Int64("max-size", 0, "refuse the artifact when its selected layers hold more than `BYTES` in all, before downloading any (default 0: no limit)")
	maxUnpacked := fs.Int64("max-unpacked-size", 0, "most `BYTES` one folder layer may unpack to (default 0: "+strconv.FormatInt(oci.DefaultMaxUnpackedBytes, 10)+")")
	var vf verifyFlags
	vf.bind(fs)
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
	if err := rf.check(); err != nil {
		return usageError(stderr, "pull", err)
	}
	for _, f := range []struct {
		name  string
		value int64
	}{{"--max-size", *maxSize}, {"--max-unpacked-size", *maxUnpacked}} {
		if f.value < 0 {
			return usageError(stderr, "pull", fmt.Errorf("%s is %d; give a number of bytes, or 0 for the default", f.name, f.value))
		}
	}
	if *layout != layoutPlain && *layout != layoutVersioned {
		fmt.Fprintf(stderr, "ocisync pull: --layout is %q; want %q or %q\n", *layout, layoutPlain, layoutVersioned)
		return 2
	}
	verifier, err := vf.verifier()
	if err != nil {
		return usageError(stderr, "pull", err)
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
	progress := newProgress(stderr)
	client, _, err := progressClient(&rf, progress)
	if err != nil {
		return fail(stderr, "pull", err)
	}
	ctx, stop := rf.context()
	defer stop()
	// The limits are not part of a version's name in the versioned
	// layout: they decide whether a pull succeeds, not what it writes.
	opts := oci.PullOptions{
		Platform:         plat,
		MediaType:        *mediaType,
		Extract:          *extract,
		MaxBytes:         *maxSize,
		MaxUnpackedBytes: *maxUnpacked,
	}
	repo := client.Repository(ref)
	if verifier != nil {
		opts.Check = checkSignature(verifier, repo, stderr)
	}
	pull := repo.PullToDir
	if *layout == layoutVersioned {
		pull = repo.PullToVolume
	}
	res, err := pull(ctx, ref.Reference(), fs.Arg(1), opts)
	progress.close()
	return reportPull(stdout, stderr, res, rf.explainTimeout(ctx, err))
}

// reportPull prints what a pull did and returns the exit code. A
// *oci.PruneError comes with a live new version: it is a warning, and the
// pull succeeded.
func reportPull(stdout, stderr io.Writer, res *oci.PullResult, err error) int {
	var pruneErr *oci.PruneError
	switch {
	case res != nil && errors.As(err, &pruneErr):
		fmt.Fprintf(stderr, "ocisync pull: warning: %s\n", oneLine(err))
	case err != nil:
		return fail(stderr, "pull", err)
	}
	for _, f := range res.Files {
		fmt.Fprintf(stdout, "Pulled %s\n", f)
	}
	fmt.Fprintln(stdout, res.Target.Root.Digest)
	return 0
}
