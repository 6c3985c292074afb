package cloudtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The GKE cluster the fake metadata server describes.
const (
	GCPProject  = "my-project"
	GCPLocation = "us-central1"
	GCPCluster  = "prod"
	// GCPPool is the workload identity pool of the cluster, the audience
	// of the ServiceAccount tokens exchanged at STS.
	GCPPool = GCPProject + ".svc.id.goog"
)

// GCP is the GKE metadata server, Google's STS and IAM Credentials.
// The metadata server hands out the node's (the manager's) access
// tokens; STS exchanges ServiceAccount tokens of audience GCPPool whose
// subject was allowed (Federate); IAM Credentials impersonates
// Impersonable for a federated token. Access tokens are named
// "<kind>-<n>".
type GCP struct {
	MD, STS, IAM *Endpoint

	// Impersonable is the IAM service account a federated identity may
	// impersonate.
	Impersonable string
	// OnToken, if set, is called with each access token handed out
	// (under the fake's lock), e.g. to make a registry accept it.
	OnToken func(token string)
	// ExpiresIn, if set, is the lifetime of each access token handed out
	// (nil: just under an hour); a test whose credentials run on a clock
	// of its own makes it end an hour after that clock's now.
	ExpiresIn func() time.Duration

	mu         sync.Mutex
	n          int
	notGKE     bool
	noIdentity bool
	federated  map[string]bool // subjects STS exchanges tokens of
	tokens     []string
}

// NewGCP starts the endpoints. The metadata server is reached through
// GCE_METADATA_HOST, set to MetadataHost by the test.
func NewGCP(t T) *GCP {
	f := &GCP{federated: map[string]bool{}}
	f.MD = NewEndpoint(t, false, f.serveMetadata)
	f.STS = NewEndpoint(t, false, f.serveSTS)
	f.IAM = NewEndpoint(t, false, f.serveIAM)
	return f
}

// MetadataHost is the value of GCE_METADATA_HOST for the fake.
func (f *GCP) MetadataHost() string { return f.MD.Addr() }

// STSURL is the fake's token endpoint (Options.GoogleSTSURL).
func (f *GCP) STSURL() string { return f.STS.URL() + "/v1/token" }

// SetNotGKE makes the metadata server name no GKE cluster.
func (f *GCP) SetNotGKE(v bool) { f.mu.Lock(); f.notGKE = v; f.mu.Unlock() }

// SetNoIdentity makes the metadata server have no service account token.
func (f *GCP) SetNoIdentity(v bool) { f.mu.Lock(); f.noIdentity = v; f.mu.Unlock() }

// Federate lets STS exchange tokens of subject (a ServiceAccount's).
func (f *GCP) Federate(subject string) { f.mu.Lock(); f.federated[subject] = true; f.mu.Unlock() }

// Tokens are the access tokens handed out, oldest first.
func (f *GCP) Tokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tokens...)
}

func (f *GCP) token(kind string) string {
	f.n++
	tok := fmt.Sprintf("%s-%d", kind, f.n)
	f.tokens = append(f.tokens, tok)
	if f.OnToken != nil {
		f.OnToken(tok)
	}
	return tok
}

func (f *GCP) expiresIn() int {
	if f.ExpiresIn != nil {
		return int(f.ExpiresIn().Seconds())
	}
	return 3599
}

func (f *GCP) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Metadata-Flavor", "Google")
	switch p := strings.TrimPrefix(r.URL.Path, "/computeMetadata/v1/"); p {
	case "project/project-id":
		fmt.Fprint(w, GCPProject)
	case "instance/attributes/cluster-location", "instance/attributes/cluster-name":
		if f.notGKE {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, map[string]string{"instance/attributes/cluster-location": GCPLocation, "instance/attributes/cluster-name": GCPCluster}[p])
	case "instance/service-accounts/default/token":
		if f.noIdentity {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": f.token("gke-access"), "expires_in": f.expiresIn(), "token_type": "Bearer"})
	default:
		http.NotFound(w, r)
	}
}

func (f *GCP) serveSTS(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	wantAud := "identitynamespace:" + GCPPool + ":https://container.googleapis.com/v1/projects/" + GCPProject + "/locations/" + GCPLocation + "/clusters/" + GCPCluster
	claims := ReadClaims(r.PostForm.Get("subject_token"))
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" || r.PostForm.Get("audience") != wantAud ||
		r.PostForm.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" || !f.federated[claims.Sub] || !claims.Is(claims.Sub, GCPPool) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"The audience in ID Token does not match the expected audience."}`)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": f.token("federated"), "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"token_type": "Bearer", "expires_in": f.expiresIn(),
	})
}

func (f *GCP) serveIAM(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bearer := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if f.Impersonable == "" || r.URL.Path != "/v1/projects/-/serviceAccounts/"+f.Impersonable+":generateAccessToken" || !strings.HasPrefix(bearer, "federated-") {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}`)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"accessToken": f.token("impersonated"), "expireTime": time.Now().Add(time.Duration(f.expiresIn()) * time.Second).UTC().Format(time.RFC3339)})
}
