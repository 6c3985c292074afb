package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// TestCosignVerifiedPull signs artifacts pushed with ORAS using the real
// cosign CLI, offline against the local registry (which has no referrers
// API: cosign lists its bundle in the referrers tag schema), in both of
// cosign's forms, and pulls them with ocisync pull --verify-key.
func TestCosignVerifiedPull(t *testing.T) {
	t.Parallel()
	cosign := registrytest.Cosign(t)
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	keys := t.TempDir()
	for _, prefix := range []string{"signer", "stranger"} {
		cosign.In(keys).MustRun(t, "generate-key-pair", "--output-key-prefix", prefix)
	}
	signer, stranger := filepath.Join(keys, "signer.pub"), filepath.Join(keys, "stranger.pub")
	// cosign 3's bundle form, with no Sigstore services: an empty signing
	// config and trusted root.
	cosign.In(keys).MustRun(t, "signing-config", "create", "--out", "sc.json")
	cosign.In(keys).MustRun(t, "trusted-root", "create", "--out", "tr.json")

	repo := repoName(t)
	// Each tag its own content, so that each is its own digest.
	srcs := map[string]string{}
	push := func(tag string) (ref, byDigest string) {
		src := filepath.Join(t.TempDir(), tag)
		writeFiles(t, src, map[string][]byte{"hello.txt": []byte("signed or not: " + tag + "\n")})
		srcs[tag] = src
		ref = plainReg.Ref(repo, tag)
		d := orasPush(t, oras, plainReg, "", src, ref, nil, "hello.txt")
		return ref, plainReg.Host + "/" + repo + "@" + d
	}
	bundleRef, bundleDigest := push("bundle")
	cosign.In(keys).MustRun(t, "sign", "--key", "signer.key", "--signing-config", "sc.json", "--trusted-root", "tr.json", "--yes", bundleDigest)
	legacyRef, legacyDigest := push("legacy")
	cosign.In(keys).MustRun(t, "sign", "--key", "signer.key", "--new-bundle-format=false", "--use-signing-config=false", "--tlog-upload=false", "--yes", legacyDigest)
	unsignedRef, _ := push("unsigned")

	pull := func(ref string, keys ...string) (registrytest.Result, string) {
		dir := filepath.Join(t.TempDir(), "out")
		args := append([]string{"pull"}, plainReg.OcisyncFlags("")...)
		for _, k := range keys {
			args = append(args, "--verify-key", k)
		}
		return oc.Run(t, append(args, ref, dir)...), dir
	}
	for _, tc := range []struct {
		name    string
		tag     string
		ref     string
		keys    []string
		wantErr string
	}{
		{"bundle form, the signer's key", "bundle", bundleRef, []string{signer}, ""},
		{"legacy form, the signer's key", "legacy", legacyRef, []string{signer}, ""},
		{"bundle form, either of two keys", "bundle", bundleRef, []string{stranger, signer}, ""},
		{"bundle form, another key", "bundle", bundleRef, []string{stranger}, "no cosign signature of sha256:"},
		{"legacy form, another key", "legacy", legacyRef, []string{stranger}, "not signed by any of the keys (stranger.pub)"},
		{"unsigned", "unsigned", unsignedRef, []string{signer}, "no cosign signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, dir := pull(tc.ref, tc.keys...)
			if tc.wantErr == "" {
				if res.ExitCode != 0 {
					t.Fatalf("pull: exit %d\n%s", res.ExitCode, res.Stderr)
				}
				if !strings.Contains(res.Stderr, "signed by key signer.pub") {
					t.Errorf("stderr does not say who signed:\n%s", res.Stderr)
				}
				assertTree(t, "pulled", dir, snapshot(t, srcs[tc.tag]))
				return
			}
			if res.ExitCode != 1 {
				t.Fatalf("pull: exit %d, want 1\n%s", res.ExitCode, res.Stderr)
			}
			assertOneLineError(t, res, []string{tc.wantErr})
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a refused pull wrote %s (%v)", dir, err)
			}
		})
	}

	t.Run("a key file that is no key", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pub")
		if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		res, _ := pull(bundleRef, bad)
		if res.ExitCode != 2 {
			t.Fatalf("exit %d, want 2\n%s", res.ExitCode, res.Stderr)
		}
		assertOneLineError(t, res, []string{"bad.pub is not a PEM public key"})
	})
}
