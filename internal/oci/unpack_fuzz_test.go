package oci

import (
	"archive/tar"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUnpack feeds arbitrary bytes (seeded with hostile archives, plain and
// gzip) through placeLayer under both unpack rules (an ORAS directory, and
// a tar layer with Extract, which becomes a file when it is no tar) and
// checks that nothing is ever made outside the target and no symlink left
// on disk leads out of it.
func FuzzUnpack(f *testing.F) {
	reg := func(name, body string) rawEntry { return rawEntry{name: name, typ: tar.TypeReg, body: body} }
	sym := func(name, target string) rawEntry {
		return rawEntry{name: name, typ: tar.TypeSymlink, linkname: target}
	}
	hard := func(name, target string) rawEntry { return rawEntry{name: name, typ: tar.TypeLink, linkname: target} }
	dir := func(name string) rawEntry { return rawEntry{name: name, typ: tar.TypeDir} }
	seeds := [][]rawEntry{
		{dir("d/"), reg("d/f", "x"), sym("d/l", "f"), hard("d/h", "d/f")},
		{reg("d/../evil", "x")},
		{reg("/d/f", "x")},
		{sym("d/l", "../.."), reg("d/l/evil", "x")},
		{sym("d/l", "/tmp"), reg("d/l/evil", "x")},
		{sym("d/self", "."), sym("d/l", "self/.."), reg("d/l/x", "x")},
		{sym("d/l", "self/.."), sym("d/self", ".")},
		{dir("d/a/"), sym("d/a/up", ".."), sym("d/l", "a/up/..")},
		{sym("d/x", "y"), sym("d/y", "x")},
		{reg("d/f", "x"), hard("d/h", "../outside.txt")},
		{sym("d/l", "f"), reg("d/f", "x"), hard("d/h", "d/l")},
		{reg("d/f", "one"), reg("d/f", "two"), dir("d/f/"), sym("d/f", ".")},
		{dir("d/s/"), sym("d/s", ".."), reg("d/s/f", "x")},
		{sym("d", ".."), reg("d/f", "x")},
		{{name: "d/dev", typ: tar.TypeChar}, {name: "d/p", typ: tar.TypeFifo}},
		{{name: "d/big", typ: tar.TypeReg, size: 1 << 40}},
		{dir("./"), reg("./a", "x"), sym("./l", "../x")},
	}
	for _, s := range seeds {
		for _, oras := range []bool{true, false} {
			f.Add(buildTar(f, true, s...), oras)
			f.Add(buildTar(f, false, s...), oras)
		}
	}
	f.Fuzz(func(t *testing.T, archive []byte, oras bool) {
		parent := t.TempDir()
		outside := filepath.Join(parent, "outside.txt")
		if err := os.WriteFile(outside, []byte("outside"), 0o644); err != nil {
			t.Fatal(err)
		}
		blob := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(blob, archive, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(parent, "out")
		prefix := ""
		if oras {
			prefix = "d"
		}
		if err := unpackBlob(blob, out, prefix, 1<<20); err != nil {
			// A refusal removes what it made.
			if _, statErr := os.Lstat(out); statErr == nil {
				t.Fatalf("unpack failed (%v) but left %s", err, out)
			}
		}

		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "out" && e.Name() != "outside.txt" {
				t.Fatalf("%s was made outside the target", e.Name())
			}
		}
		if data, err := os.ReadFile(outside); err != nil || string(data) != "outside" {
			t.Fatalf("outside.txt changed: %q, %v", data, err)
		}
		base, err := filepath.EvalSymlinks(parent)
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(base, "out")
		_ = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatalf("lstat %s: %v", p, err)
			}
			rel, _ := filepath.Rel(out, p)
			if fi.Mode()&os.ModeSymlink != 0 && !leadsInside(t, target, rel) {
				link, _ := os.Readlink(p)
				t.Fatalf("symlink %s -> %s leads outside %s", p, link, target)
			}
			if !fi.IsDir() && !fi.Mode().IsRegular() && fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("%s has mode %v", p, fi.Mode())
			}
			return nil
		})
	})
}

// leadsInside follows the symlink at rel (relative to root) as the kernel
// would, with absolute paths, and reports whether every step stays within
// root. A path that cannot be resolved (missing component, loop) leads
// nowhere, so it does not lead out.
func leadsInside(t *testing.T, root, rel string) bool {
	inside := func(q string) bool {
		return q == root || strings.HasPrefix(q, root+string(filepath.Separator))
	}
	cur := root
	pending := strings.Split(filepath.ToSlash(rel), "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur = filepath.Dir(cur); !inside(cur) {
				return false
			}
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return true
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 255 {
			return true
		}
		link, err := os.Readlink(next)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.IsAbs(link) {
			return false
		}
		pending = append(strings.Split(link, "/"), pending...)
	}
	return true
}
