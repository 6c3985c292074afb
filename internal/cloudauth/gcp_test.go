package cloudauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	garHostName  = "us-central1-docker.pkg.dev"
	gcpProject   = "my-project"
	gcpPool      = gcpProject + ".svc.id.goog"
	gcpImpersona = "puller@my-project.iam.gserviceaccount.com"
)

// fakeGCP is the GKE metadata server, Google's STS and IAM Credentials.
type fakeGCP struct {
	md, sts, iam *endpoint
	mu           sync.Mutex
	n            int
	notGKE       bool
	noIdentity   bool
	// accepted are the access tokens handed out, which the test registry
	// can be told to accept.
	accepted []string
}

func newFakeGCP(t *testing.T) *fakeGCP {
	f := &fakeGCP{}
	f.md = newEndpoint(t, false, f.serveMetadata)
	f.sts = newEndpoint(t, false, f.serveSTS)
	f.iam = newEndpoint(t, false, f.serveIAM)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(f.md.URL(), "http://"))
	return f
}

func (f *fakeGCP) token(prefix string) string {
	f.n++
	tok := fmt.Sprintf("%s-%d", prefix, f.n)
	f.accepted = append(f.accepted, tok)
	return tok
}

func (f *fakeGCP) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Metadata-Flavor", "Google")
	switch p := strings.TrimPrefix(r.URL.Path, "/computeMetadata/v1/"); p {
	case "project/project-id":
		fmt.Fprint(w, gcpProject)
	case "instance/attributes/cluster-location", "instance/attributes/cluster-name":
		if f.notGKE {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, map[string]string{"instance/attributes/cluster-location": "us-central1", "instance/attributes/cluster-name": "prod"}[p])
	case "instance/service-accounts/default/token":
		if f.noIdentity {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": f.token("gke-access"), "expires_in": 3599, "token_type": "Bearer"})
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeGCP) serveSTS(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	wantAud := "identitynamespace:" + gcpPool + ":https://container.googleapis.com/v1/projects/" + gcpProject + "/locations/us-central1/clusters/prod"
	sub := r.PostForm.Get("subject_token")
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" || r.PostForm.Get("audience") != wantAud ||
		r.PostForm.Get("subject_token_type") != jwtTokenType || sub != saToken("team-a", "puller", gcpPool) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"The audience in ID Token does not match the expected audience."}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": f.token("federated"), "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"token_type": "Bearer", "expires_in": 3600,
	})
}

func (f *fakeGCP) serveIAM(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bearer := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if r.URL.Path != "/v1/projects/-/serviceAccounts/"+gcpImpersona+":generateAccessToken" || !strings.HasPrefix(bearer, "federated-") {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"accessToken": f.token("impersonated"), "expireTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
}

func (f *fakeGCP) options(clock *fakeClock) Options {
	o := Options{HTTPClient: loopbackClient(nil), GoogleSTSURL: f.sts.URL() + "/v1/token", GoogleIAMCredentialsURL: f.iam.URL()}
	if clock != nil {
		o.Now = clock.Now
	}
	return o
}

func TestGCPManagerIdentity(t *testing.T) {
	f := newFakeGCP(t)
	clock := newFakeClock()
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
	hits := f.md.hits.Load()
	_, err = c.Get(ctx, "ghcr.io", nil)
	mustClass(t, err, ErrHostRefused, []string{"gcp: host check", "ghcr.io"})
	if f.md.hits.Load() != hits {
		t.Fatal("metadata server asked for a refused host")
	}
}

func TestGCPMissingIdentityAndMetadataDown(t *testing.T) {
	f := newFakeGCP(t)
	f.noIdentity = true
	c, _ := New(GCP, f.options(nil))
	_, err := c.Get(context.Background(), garHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"gcp: Application Default Credentials for " + garHostName})
	f.noIdentity = false
	f.md.down()
	_, err = c.Get(context.Background(), garHostName, nil)
	mustClass(t, err, ErrUnavailable, []string{"gcp: Application Default Credentials"})
	f.md.up()
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
	f.notGKE = true
	c, _ := New(GCP, f.options(nil))
	id, _ := NewIdentity(GCP, "team-a", "puller", nil, (&saTokens{}).fn("team-a", "puller"))
	_, err := c.Get(context.Background(), garHostName, id)
	mustClass(t, err, ErrUnsupported, []string{"GKE", "cluster-name"})
	if f.sts.hits.Load() != 0 {
		t.Fatal("STS asked outside GKE")
	}
}
