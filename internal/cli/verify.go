package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/verify"
)

// verifyFlags are pull's signature verification flags, which mirror an
// Artifact's spec.verify.
type verifyFlags struct {
	keys        pathList
	trustedRoot string
	issuers     pathList
	subjects    pathList
	// Notation: a trust policy document, and the trust stores'
	// certificates, each file a store named by the file's name.
	trustPolicy string
	certs       pathList
}

func (v *verifyFlags) bind(fs *flag.FlagSet) {
	fs.Var(&v.keys, "verify-key", "pull only if a cosign signature of the manifest verifies with this PEM public `FILE` (as cosign generate-key-pair writes cosign.pub); repeat for several keys, any one is enough")
	fs.StringVar(&v.trustedRoot, "verify-trusted-root", "", "Sigstore trusted root `FILE` (trusted_root.json) to verify keyless cosign signatures against, offline; with --verify-oidc-issuer and --verify-oidc-subject")
	fs.Var(&v.issuers, "verify-oidc-issuer", "regular `EXPRESSION` the keyless signing certificate's OIDC issuer must match; repeat with --verify-oidc-subject for several identities, paired in order")
	fs.Var(&v.subjects, "verify-oidc-subject", "regular `EXPRESSION` the keyless signing certificate's subject must match, paired with --verify-oidc-issuer")
	fs.StringVar(&v.trustPolicy, "verify-notation-trust-policy", "", "pull only if a Notation signature of the manifest verifies under this trust policy `FILE` (trustpolicy.json); with --verify-notation-cert")
	fs.Var(&v.certs, "verify-notation-cert", "PEM or DER certificate `FILE` of a trust store of the Notation trust policy: NAME.crt or NAME.pem holds the certificates of the trust store NAME (ca:NAME); repeat for several")
}

// notation reports whether the flags ask for Notation verification.
func (v *verifyFlags) notation() bool { return v.trustPolicy != "" || len(v.certs) > 0 }

// notationVerifier reads the Notation flags' files into the layout of
// an Artifact's Secret.
func (v *verifyFlags) notationVerifier() (verify.Verifier, error) {
	if v.trustPolicy == "" || len(v.certs) == 0 {
		return nil, errors.New("notation verification needs --verify-notation-trust-policy and at least one --verify-notation-cert")
	}
	material := map[string][]byte{}
	read := func(file, name string) error { return readMaterial(material, file, name) }
	if err := read(v.trustPolicy, verify.TrustPolicyKey); err != nil {
		return nil, err
	}
	for _, f := range v.certs {
		name := filepath.Base(f)
		if !strings.HasSuffix(name, ".crt") && !strings.HasSuffix(name, ".pem") {
			name += ".crt"
		}
		if _, dup := material[name]; dup {
			return nil, fmt.Errorf("--verify-notation-cert: two files are named %s; put the certificates of one trust store in one PEM file", name)
		}
		if err := read(f, name); err != nil {
			return nil, err
		}
	}
	n, err := verify.NewNotation(material)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// verifier returns the Verifier the flags ask for, nil when none.
func (v *verifyFlags) verifier() (verify.Verifier, error) {
	keyless := v.trustedRoot != "" || len(v.issuers) > 0 || len(v.subjects) > 0
	switch {
	case v.notation() && (keyless || len(v.keys) > 0):
		return nil, errors.New("the Notation flags (--verify-notation-trust-policy, --verify-notation-cert) and the cosign flags (--verify-key, --verify-trusted-root, --verify-oidc-issuer, --verify-oidc-subject) are alternatives; give one or the other")
	case v.notation():
		return v.notationVerifier()
	case !keyless && len(v.keys) == 0:
		return nil, nil
	case keyless && len(v.keys) > 0:
		return nil, errors.New("--verify-key and the keyless flags (--verify-trusted-root, --verify-oidc-issuer, --verify-oidc-subject) are alternatives; give one or the other")
	case keyless && (v.trustedRoot == "" || len(v.issuers) == 0 || len(v.issuers) != len(v.subjects)):
		return nil, errors.New("keyless verification needs --verify-trusted-root and one --verify-oidc-subject for each --verify-oidc-issuer")
	}
	material := map[string][]byte{}
	read := func(file, name string) error { return readMaterial(material, file, name) }
	var ids []verify.Identity
	if keyless {
		if err := read(v.trustedRoot, verify.TrustedRootKey); err != nil {
			return nil, err
		}
		for i := range v.issuers {
			ids = append(ids, verify.Identity{Issuer: v.issuers[i], Subject: v.subjects[i]})
		}
	}
	for _, f := range v.keys {
		name := filepath.Base(f)
		if !strings.HasSuffix(name, ".pub") {
			name += ".pub"
		}
		if _, dup := material[name]; dup {
			name = fmt.Sprintf("%d-%s", len(material), name)
		}
		if err := read(f, name); err != nil {
			return nil, err
		}
	}
	return verify.NewCosign(material, ids)
}

// checkSignature makes a pull verify the manifest it is about to pull,
// reporting who signed it on progress.
func checkSignature(v verify.Verifier, repo *oci.Repository, stderr io.Writer) func(context.Context, *oci.Target) error {
	if n, ok := v.(*verify.Notation); ok {
		n.Repository = verify.RepositoryScope(repo)
	}
	return func(ctx context.Context, t *oci.Target) error {
		res, err := v.Verify(ctx, repo, t.Root)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Verified %s: signed by %s\n", t.Root.Digest, res.Identity)
		return nil
	}
}

// readMaterial reads file into material under name, the layout of an
// Artifact's verification Secret.
func readMaterial(material map[string][]byte, file, name string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading the verification material: %w", err)
	}
	material[name] = b
	return nil
}
