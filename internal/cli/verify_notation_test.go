package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// notationFiles writes a trust policy for the fake registry's repository
// and a CA certificate for its trust store acme.
func notationFiles(t *testing.T, host string) (policy, cert string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert = filepath.Join(dir, "acme.crt")
	policy = filepath.Join(dir, "trustpolicy.json")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `{"version":"1.0","trustPolicies":[{"name":"acme","registryScopes":["` + host + "/" + testRepo + `"],` +
		`"signatureVerification":{"level":"strict"},"trustStores":["ca:acme"],"trustedIdentities":["*"]}]}`
	if err := os.WriteFile(policy, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return policy, cert
}

func TestPullNotationFlags(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.push(t, "v1", map[string]string{"a.txt": "one\n"})
	policy, cert := notationFiles(t, reg.host)
	key := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(key, []byte("unused"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  string
	}{
		{"mixed with cosign", []string{"--verify-notation-trust-policy", policy, "--verify-notation-cert", cert, "--verify-key", key}, 2, "are alternatives"},
		{"no certificate", []string{"--verify-notation-trust-policy", policy}, 2, "needs --verify-notation-trust-policy and at least one --verify-notation-cert"},
		{"no trust policy", []string{"--verify-notation-cert", cert}, 2, "needs --verify-notation-trust-policy"},
		{"a trust policy that is not one", []string{"--verify-notation-trust-policy", cert, "--verify-notation-cert", cert}, 2, "trustpolicy.json is not a Notation trust policy document"},
		{"an unsigned artifact", []string{"--verify-notation-trust-policy", policy, "--verify-notation-cert", cert, "--plain-http"}, 1, "no Notation signature of sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			var stdout, stderr bytes.Buffer
			code := Run(append(append([]string{"pull"}, tc.flags...), reg.host+"/"+testRepo+":v1", dir), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr.String(), tc.code, tc.want)
			}
			if strings.Count(strings.TrimRight(stderr.String(), "\n"), "\n") != 0 {
				t.Errorf("stderr is not one line: %q", stderr.String())
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("pull wrote %s although it failed (%v)", dir, err)
			}
		})
	}
}
