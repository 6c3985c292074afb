package integration

import (
	"path/filepath"
	"strings"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// noConfig means: pass no --docker-config flag at all (the isolated HOME
// has no docker config either).
const noConfig = "(no config flag)"

// secrets that must never appear in ocisync's output.
func secrets() []string {
	return []string{
		writer.Password, reader.Password, wrongPasswordValue,
		tokenReg.Tokens.RefreshToken(writer.Name), tokenReg.Tokens.RefreshToken(reader.Name),
		tokenReg.Tokens.RefreshToken(robot.Name),
	}
}

func TestOcisyncAuth(t *testing.T) {
	t.Parallel()
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	fx := newFixture(t)
	want := snapshot(t, fx.src).subtree("hello.txt", "data.bin")

	// One artifact per registry, pushed by the writer with oras.
	type seed struct{ ref, digest string }
	seeds := map[*registrytest.Registry]seed{}
	for _, r := range []*registrytest.Registry{basicReg, tokenReg} {
		ref := r.Ref(repoName(t), "v1")
		seeds[r] = seed{ref, orasPush(t, oras, r, r.WriteDockerConfig(t, writer.Name), fx.src, ref, nil, "hello.txt", "data.bin")}
	}

	unauthorized := []string{"unauthorized"}
	refused := []string{"unauthorized", "denied", "authentication required"}
	tests := []struct {
		name    string
		reg     *registrytest.Registry
		who     string // see dockerConfig, or noConfig
		push    bool   // push instead of pull
		wantErr []string
	}{
		{"htpasswd: writer pulls", basicReg, writer.Name, false, nil},
		{"htpasswd: writer pushes", basicReg, writer.Name, true, nil},
		{"htpasswd: wrong password on pull", basicReg, wrongPassword, false, unauthorized},
		{"htpasswd: wrong password on push", basicReg, wrongPassword, true, unauthorized},
		{"htpasswd: no credentials", basicReg, noConfig, false, unauthorized},
		{"token: writer pulls", tokenReg, writer.Name, false, nil},
		{"token: writer pushes", tokenReg, writer.Name, true, nil},
		{"token: anonymous pull denied", tokenReg, anonymous, false, refused},
		{"token: no credentials", tokenReg, noConfig, false, refused},
		{"token: wrong password", tokenReg, wrongPassword, false, unauthorized},
		{"token: read-only user pulls", tokenReg, reader.Name, false, nil},
		{"token: read-only user pulls with identity token", tokenReg, identityToken + reader.Name, false, nil},
		{"token: read-only user cannot push", tokenReg, reader.Name, true, []string{"denied"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ""
			if tt.who != noConfig {
				cfg = dockerConfig(t, tt.reg, tt.who)
			}
			var res registrytest.Result
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			if tt.push {
				ref := tt.reg.Ref(repoName(t), "pushed")
				args := append(append([]string{"push"}, tt.reg.OcisyncFlags(cfg)...), ref, "hello.txt", "data.bin")
				res = oc.In(fx.src).Run(t, args...)
			} else {
				res = ocisyncPull(t, oc, tt.reg, cfg, nil, seeds[tt.reg].ref, out)
			}
			assertOneLineErrorOrSuccess(t, res, tt.wantErr, secrets()...)
			if user, ok := strings.CutPrefix(tt.who, identityToken); ok {
				assertRefreshGrant(t, tt.reg, user)
			}
			switch {
			case tt.wantErr != nil && !tt.push:
				assertTree(t, "folder beside the failed pull", parent, tree{})
			case tt.wantErr == nil && !tt.push:
				if got := res.LastLine(); got != seeds[tt.reg].digest {
					t.Errorf("last stdout line %q, want %s", got, seeds[tt.reg].digest)
				}
				assertTree(t, "ocisync pull", out, want)
			case tt.wantErr == nil && tt.push:
				if !digestRE.MatchString(res.LastLine()) {
					t.Errorf("last stdout line %q, want a digest", res.LastLine())
				}
			}
		})
	}
}

// assertOneLineErrorOrSuccess checks res succeeded when wantErr is nil,
// else that it failed with one stderr line mentioning one of wantErr; in
// both cases no secret may appear in the output.
func assertOneLineErrorOrSuccess(t *testing.T, res registrytest.Result, wantErr []string, secrets ...string) {
	t.Helper()
	if wantErr == nil {
		if res.ExitCode != 0 {
			t.Fatalf("ocisync %v: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", res.Args, res.ExitCode, res.Stdout, res.Stderr)
		}
		assertNoSecrets(t, res, secrets...)
		return
	}
	if res.ExitCode == 0 {
		t.Fatalf("ocisync %v: exit 0, want failure\nstdout:\n%s\nstderr:\n%s", res.Args, res.Stdout, res.Stderr)
	}
	assertOneLineError(t, res, wantErr, secrets...)
	t.Logf("ocisync %s failed as expected: %s", res.Args[0], strings.TrimSpace(res.Stderr))
}

// TestOcisyncCachesTokens: one command reuses its bearer token across
// requests instead of asking the issuer for every blob.
func TestOcisyncCachesTokens(t *testing.T) {
	t.Parallel()
	// A registry of its own, so no other test's requests are counted.
	reg := registrytest.Start(t, registrytest.Options{Auth: registrytest.AuthToken, TLS: true, Users: users})
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	cfg := reg.WriteDockerConfig(t, writer.Name)
	src := t.TempDir()
	files := map[string][]byte{"big.bin": randomBytes(t, 2*mib)}
	names := []string{"big.bin"}
	for _, n := range []string{"one.txt", "two.txt", "three.txt", "four.txt"} {
		files[n] = []byte(n + " " + t.Name())
		names = append(names, n)
	}
	writeFiles(t, src, files)
	ref := reg.Ref(repoName(t), "v1")
	digest := orasPush(t, oras, reg, cfg, src, ref, nil, names...)

	count := func(what string, run func()) int {
		before := len(reg.Tokens.Requests())
		run()
		reqs := reg.Tokens.Requests()[before:]
		for _, r := range reqs {
			t.Logf("%s: token request %s", what, r)
		}
		return len(reqs)
	}
	orasPulls := count("oras pull", func() { orasPull(t, oras, reg, cfg, filepath.Join(t.TempDir(), "oras"), ref) })
	t.Logf("for comparison, oras pull took %d token requests", orasPulls)

	out := filepath.Join(t.TempDir(), "out")
	n := count("ocisync pull", func() {
		if got := mustPullDigest(t, oc, reg, cfg, nil, ref, out); got != digest {
			t.Errorf("last stdout line %q, want %s", got, digest)
		}
	})
	assertTree(t, "ocisync pull", out, snapshot(t, src))
	if n < 1 || n > 2 {
		t.Errorf("ocisync pull of %d layers made %d token requests, want 1 or 2 (tokens cached per command)", len(names), n)
	}

	n = count("ocisync push", func() {
		ocisyncPush(t, oc, reg, cfg, src, nil, reg.Ref(repoName(t), "v1"), names...)
	})
	if n < 1 || n > 2 {
		t.Errorf("ocisync push of %d files made %d token requests, want 1 or 2 (tokens cached per command)", len(names), n)
	}
}

// TestOcisyncTLSErrors: a TLS registry whose CA is not trusted fails with
// a line naming the certificate problem.
func TestOcisyncTLSErrors(t *testing.T) {
	t.Parallel()
	reg := basicReg
	oras := registrytest.Oras(t)
	oc := registrytest.Ocisync(t)
	fx := newFixture(t)
	cfg := reg.WriteDockerConfig(t, writer.Name)
	ref := reg.Ref(repoName(t), "v1")
	orasPush(t, oras, reg, cfg, fx.src, ref, nil, "hello.txt")
	otherCA := registrytest.NewPKI(t).CAFile
	missingCA := filepath.Join(t.TempDir(), "does-not-exist-ca.pem")

	tests := []struct {
		name    string
		flags   []string
		push    bool
		wantErr []string
	}{
		{"pull without --ca-file", nil, false, []string{"certificate"}},
		{"push without --ca-file", nil, true, []string{"certificate"}},
		{"pull with another CA", []string{"--ca-file", otherCA}, false, []string{"certificate"}},
		{"pull with a missing CA file", []string{"--ca-file", missingCA}, false, []string{"does-not-exist-ca.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			args := append([]string{"--docker-config", cfg}, tt.flags...)
			var res registrytest.Result
			if tt.push {
				res = oc.In(fx.src).Run(t, append(append([]string{"push"}, args...), reg.Ref(repoName(t), "v1"), "hello.txt")...)
			} else {
				res = oc.Run(t, append(append([]string{"pull"}, args...), ref, filepath.Join(parent, "out"))...)
			}
			assertOneLineErrorOrSuccess(t, res, tt.wantErr, secrets()...)
			assertTree(t, "folder beside the failed pull", parent, tree{})
		})
	}
}
