package cloudauth

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocisync/ocisync/internal/cloudauth/cloudtest"
)

const (
	garHostName  = "us-central1-docker.pkg.dev"
	gcpPool      = cloudtest.GCPPool
	gcpImpersona = "puller@my-project.iam.gserviceaccount.com"
)

// fakeGCP is the GKE metadata server, Google's STS and IAM Credentials.
type fakeGCP struct{ *cloudtest.GCP }

func newFakeGCP(t *testing.T) *fakeGCP {
	f := &fakeGCP{cloudtest.NewGCP(t)}
	f.Impersonable = gcpImpersona
	f.Federate(cloudtest.ServiceAccountSubject("team-a", "puller"))
	t.Setenv("GCE_METADATA_HOST", f.MetadataHost())
	return f
}

func (f *fakeGCP) options(clock *cloudtest.Clock) Options {
	o := Options{HTTPClient: cloudtest.LoopbackClient(nil), GoogleSTSURL: f.STSURL(), GoogleIAMCredentialsURL: f.IAM.URL()}
	if clock != nil {
		o.Now = clock.Now
	}
	return o
}

func TestGCPManagerIdentity(t *testing.T) {
	f := newFakeGCP(t)
	clock := &cloudtest.Clock{}
	c, _ := New(GCP, f.options(clock))
	ctx := context.Background()
	cred, err := c.Get(ctx, garHostName, nil)
	if err != nil || cred.Username != "oauth2accesstoken" || cred.Password != "gke-access-1" {
		t.Fatalf("Get: %v %q %v", cred, cred.Password, err)
	}
	// One token for every Google registry, until shortly before expiry.
	for _, h := range []string{garHostName, "gcr.io", "eu.gcr.io", "europe-docker.pkg.dev"} {
		if cred, err = c.Get(ctx, h, nil); err != nil || cred.Password != "gke-access-1" {
			t.Fatalf("Get(%s): %q %v", h, cred.Password, err)
		}
	}
	clock.Add(50 * time.Minute)
	if cred, err = c.Get(ctx, garHostName, nil); err != nil || cred.Password != "gke-access-2" {
		t.Fatalf("after 50 minutes: %q %v", cred.Password, err)
	}
	// Invalidate gets a fresh one, not the one the SDK would reuse.
	c.Invalidate(garHostName, nil)
	if cred, err = c.Get(ctx, garHostName, nil); err != nil || cred.Password != "gke-access-3" {
		t.Fatalf("after Invalidate: %q %v", cred.Password, err)
	}
	hits := f.MD.Hits.Load()
	_, err = c.Get(ctx, "ghcr.io", nil)
	mustClass(t, err, ErrHostRefused, []string{"gcp: host check", "ghcr.io"})
	if f.MD.Hits.Load() != hits {
		t.Fatal("metadata server asked for a refused host")
	}
}

func TestGCPMissingIdentityAndMetadataDown(t *testing.T) {
	f := newFakeGCP(t)
	f.SetNoIdentity(true)
	c, _ := New(GCP, f.options(nil))
	_, err := c.Get(context.Background(), garHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"gcp: Application Default Credentials for " + garHostName})
	f.SetNoIdentity(false)
	f.MD.Down()
	_, err = c.Get(context.Background(), garHostName, nil)
	mustClass(t, err, ErrUnavailable, []string{"gcp: Application Default Credentials"})
	f.MD.Up()
	if _, err := c.Get(context.Background(), garHostName, nil); err != nil {
		t.Fatalf("after the metadata server came back: %v", err)
	}
}

func TestGCPServiceAccount(t *testing.T) {
	f := newFakeGCP(t)
	c, _ := New(GCP, f.options(nil))
	ctx := context.Background()
	tokens := &saTokens{}
	// Direct federation: the ServiceAccount's own principal.
	id, _ := NewIdentity(GCP, "team-a", "puller", nil, tokens.fn("team-a", "puller"))
	cred, err := c.Get(ctx, garHostName, id)
	if err != nil || cred.Password != "federated-1" {
		t.Fatalf("federated: %q %v", cred.Password, err)
	}
	if tokens.audiences[0] != gcpPool {
		t.Fatalf("audiences %v", tokens.audiences)
	}
	// With the annotation: impersonation of the IAM service account.
	imp, _ := NewIdentity(GCP, "team-a", "puller", map[string]string{AnnotationGCPServiceAccount: gcpImpersona}, tokens.fn("team-a", "puller"))
	if cred, err = c.Get(ctx, garHostName, imp); err != nil || !strings.HasPrefix(cred.Password, "impersonated-") {
		t.Fatalf("impersonated: %q %v", cred.Password, err)
	}
	// Another ServiceAccount's token is refused by STS.
	other, _ := NewIdentity(GCP, "team-b", "puller", nil, (&saTokens{}).fn("team-b", "puller"))
	_, err = c.Get(ctx, garHostName, other)
	mustClass(t, err, ErrAuthFailed, []string{"gcp: STS token exchange for ServiceAccount team-b/puller", "invalid_grant"}, saToken("team-b", "puller", gcpPool))
	// Impersonation refused.
	bad, err := NewIdentity(GCP, "team-a", "puller", map[string]string{AnnotationGCPServiceAccount: "other-sa@my-project.iam.gserviceaccount.com"}, tokens.fn("team-a", "puller"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, garHostName, bad)
	mustClass(t, err, ErrAuthFailed, []string{"gcp:", "403"})
}

func TestGCPServiceAccountOutsideGKE(t *testing.T) {
	f := newFakeGCP(t)
	f.SetNotGKE(true)
	c, _ := New(GCP, f.options(nil))
	id, _ := NewIdentity(GCP, "team-a", "puller", nil, (&saTokens{}).fn("team-a", "puller"))
	_, err := c.Get(context.Background(), garHostName, id)
	mustClass(t, err, ErrUnsupported, []string{"GKE", "cluster-name"})
	if f.STS.Hits.Load() != 0 {
		t.Fatal("STS asked outside GKE")
	}
}

// TestGCPApplicationCredentialsFile: GOOGLE_APPLICATION_CREDENTIALS
// comes before the metadata server, here a workload identity federation
// configuration (as `gcloud iam workload-identity-pools create-cred-config`
// writes for a manager outside Google Cloud) whose subject token is a
// file.
func TestGCPApplicationCredentialsFile(t *testing.T) {
	f := newFakeGCP(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(saToken("ocisync-system", "ocisync-manager", gcpPool)), 0o600); err != nil {
		t.Fatal(err)
	}
	conf, _ := json.Marshal(map[string]any{
		"type": "external_account",
		"audience": "identitynamespace:" + gcpPool + ":https://container.googleapis.com/v1/projects/" + cloudtest.GCPProject +
			"/locations/" + cloudtest.GCPLocation + "/clusters/" + cloudtest.GCPCluster,
		"subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
		"token_url":          f.STSURL(),
		"credential_source":  map[string]any{"file": tokenFile},
	})
	confFile := filepath.Join(dir, "credentials.json")
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", confFile)
	c, _ := New(GCP, f.options(nil))
	// Not federated yet: STS refuses, and says so.
	_, err := c.Get(context.Background(), garHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"gcp: Application Default Credentials for " + garHostName, "invalid_grant"})
	f.Federate(cloudtest.ServiceAccountSubject("ocisync-system", "ocisync-manager"))
	cred, err := c.Get(context.Background(), garHostName, nil)
	if err != nil || cred.Password != "federated-1" {
		t.Fatalf("Get: %q %v", cred.Password, err)
	}
	if f.MD.Hits.Load() != 0 {
		t.Fatal("the metadata server was asked although GOOGLE_APPLICATION_CREDENTIALS is set")
	}
}
