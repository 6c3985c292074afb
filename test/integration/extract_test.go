package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// ORAS gives every file pushed without a media type this one, which says
// tar whether or not the file is one.
const orasDefaultType = "application/vnd.oci.image.layer.v1.tar"

// writeTar writes a tar of files (name -> content, "" ending in / for a
// folder) to path, in the order given.
func writeTar(t *testing.T, path string, names []string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		hdr := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[name]))}
		if strings.HasSuffix(name, "/") {
			hdr = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gw := gzip.NewWriter(&buf)
	if _, err := gw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// versionWithOptionsRE matches the version folder --extract selects.
var versionWithOptionsRE = regexp.MustCompile(`^\.ocisync/[0-9a-f]{64}-[0-9a-f]{12}$`)

// TestPullExtractMixedArtifact is the case: one artifact holds a
// folder pushed with oras (tar+gzip with ORAS's unpack annotation), a real
// tar pushed with the tar media type, and plain files that oras pushed
// without a type, so under its default tar media type. `ocisync pull
// --extract` used to fail on notes.txt ("neither gzip-compressed nor a tar
// archive") and write nothing; it must unpack the folder and the tar and
// write the plain files byte for byte, in the plain and the versioned
// layout, for an artifact pushed by oras and one pushed by ocisync.
func TestPullExtractMixedArtifact(t *testing.T) {
	t.Parallel()
	reg := plainReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)

	src := filepath.Join(t.TempDir(), "src")
	notes := []byte("notes pushed without a media type\n" + t.Name() + "\n")
	csvGz := gzipped(t, []byte("a,b\n1,2\n"))
	writeFiles(t, src, map[string][]byte{
		"dir/a.txt":     []byte("a file in the folder\n"),
		"dir/sub/b.bin": randomBytes(t, 64<<10),
		"notes.txt":     notes,
		"empty.txt":     nil,
		"data.csv.gz":   csvGz,
		"long-text.md":  bytes.Repeat([]byte("more than one tar block of text\n"), 40),
	})
	bundleFiles := map[string]string{"./": "", "./c.txt": "c in the tar\n", "etc/": "", "etc/d.conf": "d = 1\n"}
	writeTar(t, filepath.Join(src, "bundle.tar"), []string{"./", "./c.txt", "etc/", "etc/d.conf"}, bundleFiles)
	plainFiles := []string{"notes.txt", "empty.txt", "data.csv.gz", "long-text.md"}
	paths := append([]string{"dir/", "bundle.tar:" + orasDefaultType}, plainFiles...)

	// What a pull with --extract must write: the folder and the tar
	// unpacked, every other file as it is.
	wantExtracted := snapshotAs(t, filepath.Join(src, "dir"), "dir")
	wantExtracted["bundle.tar"] = "dir"
	wantExtracted["bundle.tar/c.txt"] = fileEntry([]byte(bundleFiles["./c.txt"]))
	wantExtracted["bundle.tar/etc"] = "dir"
	wantExtracted["bundle.tar/etc/d.conf"] = fileEntry([]byte(bundleFiles["etc/d.conf"]))
	for _, name := range plainFiles {
		for k, v := range snapshotAs(t, filepath.Join(src, name), name) {
			wantExtracted[k] = v
		}
	}
	wantTitles := []string{"dir", "bundle.tar", "notes.txt", "empty.txt", "data.csv.gz", "long-text.md"}

	orasRepo, ocisyncRepo := repoName(t), repoName(t)
	pushed := map[string]string{
		"oras":    orasPush(t, oras, reg, "", src, reg.Ref(orasRepo, "v1"), nil, paths...),
		"ocisync": ocisyncPush(t, oc, reg, "", src, nil, reg.Ref(ocisyncRepo, "v1"), paths...),
	}
	refs := map[string]string{"oras": reg.Ref(orasRepo, "v1"), "ocisync": reg.Ref(ocisyncRepo, "v1")}

	for _, by := range []string{"oras", "ocisync"} {
		t.Run("pushed by "+by, func(t *testing.T) {
			t.Parallel()
			ref, digest := refs[by], pushed[by]
			// Preconditions: the layers are what the issue describes.
			layers := layerByTitle(orasManifest(t, oras, reg, "", ref))
			if l := layers["dir"]; l.Annotations[unpackAnnotation] != "true" {
				t.Fatalf("dir/ was pushed as %+v, want %s=true", l, unpackAnnotation)
			}
			for _, name := range append([]string{"bundle.tar"}, plainFiles...) {
				if l := layers[name]; l.MediaType != orasDefaultType || l.Annotations[unpackAnnotation] != "" {
					t.Fatalf("%s was pushed as %+v, want media type %s and no %s", name, l, orasDefaultType, unpackAnnotation)
				}
			}

			t.Run("plain layout", func(t *testing.T) {
				t.Parallel()
				parent := t.TempDir()
				out := filepath.Join(parent, "out")
				res := ocisyncPull(t, oc, reg, "", []string{"--extract"}, ref, out)
				if res.ExitCode != 0 {
					t.Fatalf("ocisync %v: exit %d\nstderr:\n%s", res.Args, res.ExitCode, res.Stderr)
				}
				if got := res.LastLine(); got != digest {
					t.Errorf("last stdout line %q, want %s", got, digest)
				}
				assertPulledTitles(t, res, wantTitles)
				assertTree(t, "ocisync pull --extract", out, wantExtracted)
				assertOnlyEntry(t, parent, "out")
			})

			t.Run("versioned layout", func(t *testing.T) {
				t.Parallel()
				root := filepath.Join(t.TempDir(), "volume")
				for range 2 { // the second pull finds the version in place
					if got := mustPullDigest(t, oc, reg, "", append(slices.Clone(versionedLayout), "--extract"), ref, root); got != digest {
						t.Errorf("last stdout line %q, want %s", got, digest)
					}
				}
				link, err := os.Readlink(filepath.Join(root, "current"))
				if err != nil {
					t.Fatal(err)
				}
				if !versionWithOptionsRE.MatchString(filepath.ToSlash(link)) || !strings.Contains(link, strings.TrimPrefix(digest, "sha256:")) {
					t.Errorf("current -> %s, want .ocisync/<hex of %s>-<options hash>", link, digest)
				}
				assertTree(t, "current after --layout versioned --extract", filepath.Join(root, "current")+string(filepath.Separator), wantExtracted)
			})

			// Without --extract only the folder is unpacked, as oras pull
			// does it.
			t.Run("without extract", func(t *testing.T) {
				t.Parallel()
				orasOut := filepath.Join(t.TempDir(), "oras")
				orasPull(t, oras, reg, "", orasOut, ref)
				want := snapshot(t, orasOut)
				if want["bundle.tar"] != fileEntry(mustRead(t, filepath.Join(src, "bundle.tar"))) {
					t.Fatalf("oras pull wrote bundle.tar as %q, want the tar file", want["bundle.tar"])
				}
				out := filepath.Join(t.TempDir(), "out")
				mustPullDigest(t, oc, reg, "", nil, ref, out)
				assertTree(t, "ocisync pull", out, want)
			})
		})
	}
}

// assertPulledTitles checks the "Pulled <title>" lines of a pull.
func assertPulledTitles(t *testing.T, res registrytest.Result, want []string) {
	t.Helper()
	var got []string
	for line := range strings.SplitSeq(res.Stdout, "\n") {
		if title, ok := strings.CutPrefix(line, "Pulled "); ok {
			got = append(got, title)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pull printed Pulled %q, want %q", got, want)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
