package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// trustedRootFile writes a Sigstore trusted root listing one certificate
// authority and, with tsa, a timestamp authority of the same certificate:
// enough to parse and to set a verifier up, not to verify anything.
func trustedRootFile(t *testing.T, tsa bool) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ocisync test CA", Organization: []string{"ocisync tests"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cas := []root.CertificateAuthority{&root.FulcioCertificateAuthority{Root: cert, ValidityPeriodStart: cert.NotBefore, URI: "https://fulcio.example"}}
	var tsas []root.TimestampingAuthority
	if tsa {
		tsas = []root.TimestampingAuthority{&root.SigstoreTimestampingAuthority{Root: cert, ValidityPeriodStart: cert.NotBefore, URI: "https://tsa.example"}}
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, cas, nil, tsas, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "trusted_root.json", data)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPullVerifyFlags checks the keyless verification flags that are
// usage errors: exit code 2 and one line on stderr, before any registry
// is reached (there is none at the reference).
func TestPullVerifyFlags(t *testing.T) {
	trusted := trustedRootFile(t, true)
	noTime := trustedRootFile(t, false)
	notRoot := writeFile(t, "root.json", []byte(`{"mediaType":"application/json"}`))
	key := writeFile(t, "cosign.pub", []byte("not read: the flags are refused first"))
	id := []string{"--verify-oidc-issuer", `^https://accounts\.example\.com$`, "--verify-oidc-subject", `^alice@example\.com$`}
	tests := []struct {
		name  string
		flags []string
		want  []string // on stderr
	}{
		{"keyless flags with --verify-key", append([]string{"--verify-key", key, "--verify-trusted-root", trusted}, id...),
			[]string{"--verify-key", "--verify-trusted-root"}},
		{"an identity with --verify-key", append([]string{"--verify-key", key}, id...),
			[]string{"--verify-key", "--verify-oidc-issuer"}},
		{"a trusted root with --verify-key", []string{"--verify-key", key, "--verify-trusted-root", trusted},
			[]string{"--verify-key", "--verify-trusted-root"}},
		{"an issuer without a subject", []string{"--verify-trusted-root", trusted, "--verify-oidc-issuer", "x"},
			[]string{"--verify-oidc-subject"}},
		{"a subject without an issuer", []string{"--verify-trusted-root", trusted, "--verify-oidc-subject", "x"},
			[]string{"--verify-oidc-issuer"}},
		{"two issuers, one subject", append([]string{"--verify-trusted-root", trusted, "--verify-oidc-issuer", "y"}, id...),
			[]string{"--verify-oidc-subject", "--verify-oidc-issuer"}},
		{"no trusted root", id,
			[]string{"--verify-trusted-root"}},
		{"a trusted root and no identity", []string{"--verify-trusted-root", trusted},
			[]string{"--verify-oidc-issuer"}},
		{"a trusted root that cannot be read", append([]string{"--verify-trusted-root", filepath.Join(t.TempDir(), "none.json")}, id...),
			[]string{"none.json"}},
		{"a trusted root that is not one", append([]string{"--verify-trusted-root", notRoot}, id...),
			[]string{"trusted_root.json is not a Sigstore trusted root"}},
		{"a trusted root without a log or timestamp authority", append([]string{"--verify-trusted-root", noTime}, id...),
			[]string{"neither a transparency log nor a timestamp authority"}},
		{"an issuer that is not a regular expression", []string{"--verify-trusted-root", trusted, "--verify-oidc-issuer", "(", "--verify-oidc-subject", "x"},
			[]string{`issuer "(" is not a regular expression`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"pull"}, tt.flags...), "localhost:5000/a:b", t.TempDir())
			code := Run(args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit code %d, want 2 (stdout %q, stderr %q)", code, stdout.String(), stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), w)
				}
			}
			if n := strings.Count(strings.TrimRight(stderr.String(), "\n"), "\n"); n != 0 || stderr.Len() == 0 {
				t.Errorf("stderr is not one line: %q", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
