package integration

import (
	"path/filepath"
	"strings"
	"testing"

	registrytest "github.com/ocisync/ocisync/test/registry"
)

// These tests use only oras. They prove the harness (htpasswd file, TLS
// CA, token issuer and its JWTs) behaves like a real registry deployment,
// so ocisync failures elsewhere point at ocisync.

func TestOrasRoundTripInEachMode(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			oras := registrytest.Oras(t)
			fx := newFixture(t)
			cfg := tg.writerConfig(t)
			ref := tg.reg.Ref(repoName(t), "v1")
			orasPush(t, oras, tg.reg, cfg, fx.src, ref, nil, "hello.txt", "data.bin", "tree/")
			out := filepath.Join(t.TempDir(), "out")
			orasPull(t, oras, tg.reg, cfg, out, ref)
			assertTree(t, "oras pull of the oras push", out, snapshot(t, fx.src))
		})
	}
}

func TestOrasAuthRules(t *testing.T) {
	t.Parallel()
	oras := registrytest.Oras(t)
	fx := newFixture(t)
	seed := func(t *testing.T, r *registrytest.Registry) string {
		ref := r.Ref(repoName(t), "v1")
		orasPush(t, oras, r, r.WriteDockerConfig(t, writer.Name), fx.src, ref, nil, "hello.txt")
		return ref
	}
	tests := []struct {
		name    string
		reg     *registrytest.Registry
		who     string // see dockerConfig
		push    bool   // push instead of pull
		wantOK  bool
		wantErr string // in oras's stderr when !wantOK
	}{
		{"htpasswd: writer pulls", basicReg, writer.Name, false, true, ""},
		{"htpasswd: no credentials", basicReg, anonymous, false, false, "credential not found"},
		{"htpasswd: wrong password", basicReg, wrongPassword, false, false, "unauthorized"},
		{"token: writer pulls", tokenReg, writer.Name, false, true, ""},
		{"token: anonymous pull denied", tokenReg, anonymous, false, false, "unauthorized"},
		{"token: wrong password", tokenReg, wrongPassword, false, false, "unauthorized"},
		{"token: reader pulls", tokenReg, reader.Name, false, true, ""},
		{"token: reader cannot push", tokenReg, reader.Name, true, false, "unauthorized"},
		{"token: robot pulls with identity token", tokenReg, identityToken + robot.Name, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ref := seed(t, tt.reg)
			cfg := dockerConfig(t, tt.reg, tt.who)
			var res registrytest.Result
			if tt.push {
				res = oras.In(fx.src).Run(t, append(append([]string{"push"}, tt.reg.OrasFlags(cfg)...), ref, "data.bin")...)
			} else {
				out := filepath.Join(t.TempDir(), "out")
				res = oras.Run(t, append(append([]string{"pull"}, tt.reg.OrasFlags(cfg)...), "-o", out, ref)...)
				if tt.wantOK {
					assertTree(t, "oras pull", out, snapshot(t, fx.src).subtree("hello.txt"))
				}
			}
			if ok := res.ExitCode == 0; ok != tt.wantOK {
				t.Fatalf("oras %v: exit %d, want success=%v\nstderr: %s", res.Args, res.ExitCode, tt.wantOK, res.Stderr)
			}
			if user, ok := strings.CutPrefix(tt.who, identityToken); ok {
				assertRefreshGrant(t, tt.reg, user)
			}
			// Failures must be the auth refusal, not something incidental.
			if !tt.wantOK && !strings.Contains(res.Stderr, tt.wantErr) {
				t.Errorf("oras stderr %q, want it to mention %q", res.Stderr, tt.wantErr)
			}
		})
	}
}
