// Command clusterimages writes the test cluster's own images as OCI
// layouts, one folder per repository, for hack/cluster.sh to push to the
// cluster registry (CLUSTER_IMAGES):
//
//	go run ./hack/clusterimages -testtools BIN -out DIR   (make cluster-images)
//
// Nothing can be pulled from outside here, so the Pod sandbox image (pause)
// and the consumer Pods' image (testtools) are both the static testtools
// binary of test/cluster/testtools, run as nonroot (65532) so that Pods
// pass Pod Security "restricted".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/ocisync/ocisync/hack/ociimage"
)

// Tag is the tag of every cluster image: not latest, so that Pods default
// to imagePullPolicy IfNotPresent.
const Tag = "v1"

func main() {
	bin := flag.String("testtools", "", "the static testtools binary (test/cluster/testtools) for this machine's platform")
	out := flag.String("out", "", "folder to write one OCI layout per repository into")
	flag.Parse()
	if *bin == "" || *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: clusterimages -testtools BIN -out DIR")
		os.Exit(2)
	}
	if err := write(*bin, *out); err != nil {
		fmt.Fprintf(os.Stderr, "clusterimages: %v\n", err)
		os.Exit(1)
	}
}

func write(bin, out string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("reading the testtools binary (build it with make cluster-images): %w", err)
	}
	if len(data) == 0 {
		return errors.New("the testtools binary " + bin + " is empty")
	}
	img := ociimage.Image{
		OS:   "linux",
		Arch: runtime.GOARCH,
		Files: []ociimage.File{
			{Path: "/etc/passwd", Mode: 0o644, Data: ociimage.Passwd},
			{Path: "/etc/group", Mode: 0o644, Data: ociimage.Group},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/testtools", Mode: 0o755, Data: data},
		},
		Entrypoint: []string{"/testtools"},
		Cmd:        []string{"pause"},
		User:       ociimage.NonRootUser,
		WorkingDir: "/",
	}
	for _, repo := range []string{"pause", "testtools"} {
		d, err := ociimage.WriteLayout(filepath.Join(out, repo), Tag, []ociimage.Image{img})
		if err != nil {
			return err
		}
		fmt.Printf("wrote %s:%s to %s: %s\n", repo, Tag, filepath.Join(out, repo), d)
	}
	return nil
}
