package integration

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// writeLegacyDockerCfg writes a docker config in the legacy .dockercfg
// form (the auths map at the top level, as in a kubernetes.io/dockercfg
// Secret) with user:password for host, and returns its path.
func writeLegacyDockerCfg(t *testing.T, host, user, password string) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), ".dockercfg")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var optionsVersionRE = regexp.MustCompile(`^\.ocisync/[0-9a-f]{64}-[0-9a-f]{12}$`)

// TestVolumePullJobCommand runs pulls the way the sync Job of a volume
// output does: a TLS registry with a password, one --docker-config per pull
// Secret in either Secret form, --timeout, and a tag@digest reference.
// Pulling the same digest with other selection options makes a version of
// its own instead of passing for up to date.
func TestVolumePullJobCommand(t *testing.T) {
	t.Parallel()
	reg := basicReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	fx := newFixture(t)
	tagRef := reg.Ref(repoName(t), "v1")
	digest := orasPush(t, oras, reg, reg.WriteDockerConfig(t, writer.Name), fx.src, tagRef, nil, fixturePaths...)
	ref := tagRef + "@" + digest
	hex := strings.TrimPrefix(digest, "sha256:")
	all := snapshot(t, fx.src)

	// As the Job mounts pull Secrets: one file each, in the listed order.
	otherRegistry := writeLegacyDockerCfg(t, "registry.example.com", "someone", "n0t-for-this-registry")
	readerLegacy := writeLegacyDockerCfg(t, reg.Host, reader.Name, reader.Password)
	wrongLegacy := writeLegacyDockerCfg(t, reg.Host, writer.Name, wrongPasswordValue)
	writerJSON := reg.WriteDockerConfig(t, writer.Name)

	root := filepath.Join(t.TempDir(), "data", "site")
	var optionsLink string // current after the --media-type pull
	steps := []struct {
		name     string
		configs  []string
		extra    []string
		wantCode int
		wantErr  string
		wantLink string // "" for .ocisync/<hex>-<options hash>
		want     tree
		wantKept int // version folders in .ocisync afterwards
	}{
		{name: "legacy secret after one for another registry", configs: []string{otherRegistry, readerLegacy}, wantLink: ".ocisync/" + hex, want: all, wantKept: 1},
		{name: "the same digest with a media type is pulled again", configs: []string{writerJSON}, extra: []string{"--media-type", typeText}, want: all.subtree("hello.txt"), wantKept: 2},
		{name: "and back without options", configs: []string{readerLegacy, writerJSON}, wantLink: ".ocisync/" + hex, want: all, wantKept: 2},
		{name: "the first secret for a registry wins, even when wrong", configs: []string{wrongLegacy, writerJSON}, wantCode: 1, wantErr: "unauthorized", wantLink: ".ocisync/" + hex, want: all, wantKept: 2},
	}
	for _, st := range steps {
		args := []string{"pull", "--layout", "versioned", "--ca-file", reg.CAFile}
		for _, c := range st.configs {
			args = append(args, "--docker-config", c)
		}
		args = append(append(append(args, st.extra...), "--timeout", "5m"), ref, root)
		res := oc.Run(t, args...)
		if res.ExitCode != st.wantCode {
			t.Fatalf("%s: ocisync %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", st.name, res.Args, res.ExitCode, st.wantCode, res.Stdout, res.Stderr)
		}
		if st.wantCode != 0 {
			assertOneLineError(t, res, []string{st.wantErr}, secrets()...)
		} else {
			assertNoSecrets(t, res, secrets()...)
			if got := res.LastLine(); got != digest {
				t.Errorf("%s: printed %q last, want %s", st.name, got, digest)
			}
		}
		link, err := os.Readlink(filepath.Join(root, "current"))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		switch {
		case st.wantLink != "" && link != st.wantLink:
			t.Errorf("%s: current -> %s, want %s", st.name, link, st.wantLink)
		case st.wantLink == "" && (!optionsVersionRE.MatchString(link) || !strings.Contains(link, hex+"-")):
			t.Errorf("%s: current -> %s, want .ocisync/%s-<options hash>", st.name, link, hex)
		case st.wantLink == "":
			optionsLink = link
		}
		assertTree(t, st.name+": current", filepath.Join(root, "current")+string(filepath.Separator), st.want)
		names := storeEntries(t, root)
		if !slices.Contains(names, "lock") || len(names) != st.wantKept+1 {
			t.Errorf("%s: .ocisync holds %q, want %d versions and the lock", st.name, names, st.wantKept)
		}
	}
	if names := storeEntries(t, root); !slices.Contains(names, filepath.Base(optionsLink)) {
		t.Errorf(".ocisync holds %q; the --media-type version %s, previous to the current one, should be kept", names, optionsLink)
	}
}
