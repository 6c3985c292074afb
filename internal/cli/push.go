package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/reference"
)

func runPush(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	var rf registryFlags
	rf.register(fs)
	artifactType := fs.String("artifact-type", oci.MediaTypeUnknownArtifact, "artifactType of the manifest, whose config is then image-spec 1.1's empty descriptor, as with ORAS; an empty `TYPE` writes the pre-1.1 form (no artifactType, config media type "+oci.MediaTypeUnknownConfig+") for registries that refuse artifactType")
	annotations := annotationFlag{}
	fs.Var(annotations, "annotation", "`KEY=VALUE` annotation on the manifest; repeatable, each KEY once (none by default, so pushing the same files twice gives the same digest; "+ocispec.AnnotationCreated+" must be an RFC 3339 time)")
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
	progress := newProgress(stderr)
	client, names, err := progressClient(&rf, progress)
	if err != nil {
		return fail(stderr, "push", err)
	}
	names.expectPush(files)
	ctx, stop := rf.context()
	defer stop()
	opts := oci.PushOptions{ArtifactType: *artifactType}
	if len(annotations) > 0 {
		opts.Annotations = annotations
	}
	desc, err := client.Repository(ref).PushFiles(ctx, ref.Tag, files, opts)
	progress.close()
	if err != nil {
		return fail(stderr, "push", rf.explainTimeout(ctx, err))
	}
	fmt.Fprintf(stdout, "Pushed %s\n", ref)
	fmt.Fprintln(stdout, desc.Digest)
	return 0
}

// annotationFlag collects repeated --annotation KEY=VALUE flags. A
// repeated key is refused rather than silently overwritten, as ORAS does.
type annotationFlag map[string]string

func (a annotationFlag) String() string {
	keys := slices.Sorted(maps.Keys(a))
	for i, k := range keys {
		keys[i] = k + "=" + a[k]
	}
	return strings.Join(keys, ",")
}

func (a annotationFlag) Set(v string) error {
	key, value, ok := strings.Cut(v, "=")
	switch {
	case !ok:
		return errors.New("want KEY=VALUE, with an '='")
	case key == "":
		return errors.New("the KEY before '=' is empty")
	}
	if _, dup := a[key]; dup {
		return fmt.Errorf("%s is given twice; give each key once", key)
	}
	if key == ocispec.AnnotationCreated {
		// image-spec: "date and time ... conforming to RFC 3339".
		if _, err := time.Parse(time.RFC3339, value); err != nil {
			return fmt.Errorf("%s must be an RFC 3339 time such as 2006-01-02T15:04:05Z, as from date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ", key)
		}
	}
	a[key] = value
	return nil
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
