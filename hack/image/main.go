// Command image writes the manager image as an OCI image layout, one image
// per platform in a multi-platform index, without a container engine:
//
//	go run ./hack/image -image ocisync:latest -out bin/image -bin bin/image-build \
//	    -ca-certificates bin/ca-certificates-VERSION -platforms "linux/amd64 linux/arm64"   (make image)
//
// The binary of each platform is read from BIN/OS-ARCH/ocisync. The
// layout's index.json names the image by the tag of -image. Tar entries
// get the time of $SOURCE_DATE_EPOCH when it is set, the Unix epoch
// otherwise, so the same inputs give the same digests.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ocisync/ocisync/hack/ociimage"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("image", flag.ContinueOnError)
	flags.SetOutput(stderr)
	ref := flags.String("image", "ocisync:latest", "image reference; its tag names the image in index.json")
	out := flags.String("out", "bin/image", "OCI image layout folder to write (replaced)")
	bin := flags.String("bin", "bin/image-build", "folder with OS-ARCH/ocisync for each platform")
	caRoot := flags.String("ca-certificates", "", "folder of the extracted Debian ca-certificates package")
	platforms := flags.String("platforms", "linux/amd64 linux/arm64", "platforms, OS/ARCH separated by spaces or commas")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "Usage: image -ca-certificates DIR [-image REF] [-out DIR] [-bin DIR] [-platforms LIST]")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 || *caRoot == "" {
		flags.Usage()
		return 2
	}
	digest, err := write(*ref, *out, *bin, *caRoot, *platforms)
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s to %s: %s\n", *ref, *out, digest)
	return 0
}

func write(ref, out, bin, caRoot, platforms string) (string, error) {
	tag, err := ociimage.TagOf(ref)
	if err != nil {
		return "", err
	}
	modTime, err := sourceDateEpoch()
	if err != nil {
		return "", err
	}
	caBundle, err := ociimage.CABundle(caRoot)
	if err != nil {
		return "", err
	}
	var images []ociimage.Image
	for _, p := range strings.FieldsFunc(platforms, func(r rune) bool { return r == ' ' || r == ',' }) {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok || goos == "" || goarch == "" || strings.Contains(goarch, "/") {
			return "", fmt.Errorf("platform %q: want OS/ARCH, such as linux/arm64", p)
		}
		path := filepath.Join(bin, goos+"-"+goarch, "ocisync")
		binary, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("reading the %s binary: %w; build it first (make image does)", p, err)
		}
		img := ociimage.Manager(goos, goarch, binary, caBundle)
		img.ModTime = modTime
		images = append(images, img)
	}
	if len(images) == 0 {
		return "", errors.New("no platforms; give -platforms such as linux/amd64")
	}
	d, err := ociimage.WriteLayout(out, tag, images)
	return string(d), err
}

// sourceDateEpoch is the time $SOURCE_DATE_EPOCH gives
// (reproducible-builds.org), zero when it is unset.
func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970-01-01 UTC, such as $(git log -1 --format=%%ct)", v)
	}
	return time.Unix(sec, 0), nil
}
