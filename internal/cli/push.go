package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

func runPush(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	var rf registryFlags
	rf.register(fs)
	artifactType := fs.String("artifact-type", "", "artifact type of the manifest (default: none, with ORAS's unknown config media type)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: ocisync push [flags] REFERENCE PATH[:MEDIATYPE]...")
		fmt.Fprintln(fs.Output(), "\nPushes files (and folders, as tar+gzip) as the layers of one artifact, as ORAS does,")
		fmt.Fprintln(fs.Output(), "and prints the manifest digest last.\n\nFlags:")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() < 2 {
		fmt.Fprintln(stderr, "ocisync push: want REFERENCE and at least one PATH (run 'ocisync push -h' for usage)")
		return 2
	}
	if err := rf.check(); err != nil {
		return usageError(stderr, "push", err)
	}
	ref, err := reference.Parse(fs.Arg(0))
	if err != nil {
		return fail(stderr, "push", err)
	}
	if ref.Digest != "" {
		return fail(stderr, "push", fmt.Errorf("reference %q has a digest; push to a tag, the digest is computed from the content", fs.Arg(0)))
	}
	ref = ref.WithDefaultTag()
	var files []oci.File
	for _, a := range fs.Args()[1:] {
		files = append(files, parseFileArg(a))
	}
	client, err := rf.client()
	if err != nil {
		return fail(stderr, "push", err)
	}
	ctx, stop := rf.context()
	defer stop()
	desc, err := client.Repository(ref).PushFiles(ctx, ref.Tag, files, oci.PushOptions{ArtifactType: *artifactType})
	if err != nil {
		return fail(stderr, "push", rf.explainTimeout(ctx, err))
	}
	fmt.Fprintf(stdout, "Pushed %s\n", ref)
	fmt.Fprintln(stdout, desc.Digest)
	return 0
}

// parseFileArg splits PATH[:MEDIATYPE] the way ORAS does: the media type
// follows the last colon, when that colon is not part of the path.
func parseFileArg(a string) oci.File {
	i := strings.LastIndexByte(a, ':')
	if i <= 0 {
		return oci.File{Path: a}
	}
	if _, err := os.Stat(a); err == nil {
		return oci.File{Path: a}
	}
	return oci.File{Path: a[:i], MediaType: a[i+1:]}
}
