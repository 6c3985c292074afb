package cloudauth

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisync/ocisync/internal/cloudauth/cloudtest"
	"github.com/ocisync/ocisync/internal/oci/errdef"
)

const (
	ecrHostName = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
	testRoleARN = "arn:aws:iam::123456789012:role/puller"
)

// fakeAWS is STS, ECR, ECR Public and the EKS Pod Identity agent.
type fakeAWS struct{ *cloudtest.AWS }

func newFakeAWS(t *testing.T) *fakeAWS {
	f := &fakeAWS{cloudtest.NewAWS(t, ecrHostName)}
	t.Setenv("AWS_ENDPOINT_URL_STS", f.STS.URL())
	t.Setenv("AWS_ENDPOINT_URL_ECR", f.ECR.URL())
	t.Setenv("AWS_ENDPOINT_URL_ECR_PUBLIC", f.ECR.URL())
	t.Setenv("AWS_REGION", "us-west-2")
	return f
}

// irsaManager sets the environment EKS gives a Pod with IRSA.
func (f *fakeAWS) irsaManager(t *testing.T) {
	jwt := saToken("ocisync-system", "ocisync-manager", AudienceAWSSTS)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", file)
	t.Setenv("AWS_ROLE_ARN", testRoleARN)
	f.Accept(jwt, testRoleARN)
}

func TestAWSManagerIdentityIRSA(t *testing.T) {
	f := newFakeAWS(t)
	f.irsaManager(t)
	clock := &cloudtest.Clock{}
	c, err := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cred, err := c.Get(ctx, ecrHostName, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Username != "AWS" || cred.Password != "ecr-password-1" || strings.Contains(cred.String(), "ecr-password") {
		t.Fatalf("credential %v (password %q)", cred, cred.Password)
	}
	if f.Regions()[0] != "us-west-2" {
		t.Errorf("ECR signed for region %q", f.Regions()[0])
	}
	// Cached: no request for the next syncs.
	stsHits, ecrHits := f.STS.Hits.Load(), f.ECR.Hits.Load()
	for range 5 {
		if cred, err = c.CredentialFunc(nil)(ctx, ecrHostName); err != nil || cred.Password != "ecr-password-1" {
			t.Fatalf("cached get: %v %v", cred, err)
		}
	}
	if f.STS.Hits.Load() != stsHits || f.ECR.Hits.Load() != ecrHits {
		t.Fatal("cached credential was fetched again")
	}
	// Renewed shortly before its 12 hours run out.
	clock.Add(11*time.Hour + 40*time.Minute)
	if cred, err = c.Get(ctx, ecrHostName, nil); err != nil || cred.Password != "ecr-password-2" {
		t.Fatalf("after 11h40m: %v %v", cred.Password, err)
	}
	// Another region is another token, signed for its region.
	if _, err = c.Get(ctx, "123456789012.dkr.ecr.eu-west-1.amazonaws.com", nil); err != nil {
		t.Fatal(err)
	}
	if r := f.Regions()[len(f.Regions())-1]; r != "eu-west-1" {
		t.Errorf("ECR request for eu-west-1 signed for %q", r)
	}
	// ECR Public.
	if cred, err = c.Get(ctx, "public.ecr.aws", nil); err != nil || cred.Username != "AWS" {
		t.Fatalf("ECR Public: %v %v", cred, err)
	}
	if r := f.Regions()[len(f.Regions())-1]; r != "us-east-1" {
		t.Errorf("ECR Public request signed for %q", r)
	}
}

func TestAWSHostMismatchSendsNothing(t *testing.T) {
	f := newFakeAWS(t)
	f.irsaManager(t)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	for _, h := range []string{"ghcr.io", "myregistry.azurecr.io", ecrHostName + ".evil.com"} {
		_, err := c.Get(context.Background(), h, nil)
		mustClass(t, err, ErrHostRefused, []string{"aws: host check", h})
		if err := c.CheckHost(h); !errors.Is(err, ErrHostRefused) {
			t.Errorf("CheckHost(%q) = %v", h, err)
		}
	}
	if n := f.STS.Hits.Load() + f.ECR.Hits.Load(); n != 0 {
		t.Fatalf("%d requests for refused hosts", n)
	}
}

func TestAWSServiceAccountIRSA(t *testing.T) {
	f := newFakeAWS(t)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	tokens := &saTokens{}
	id, err := NewIdentity(AWS, "team-a", "puller", map[string]string{AnnotationAWSRoleARN: testRoleARN}, tokens.fn("team-a", "puller"))
	if err != nil {
		t.Fatal(err)
	}
	// STS trusts only the ServiceAccount's token for sts.amazonaws.com.
	good := saToken("team-a", "puller", AudienceAWSSTS)
	f.Accept(good, testRoleARN)
	cred, err := c.Get(context.Background(), ecrHostName, id)
	if err != nil || cred.Password != "ecr-password-1" {
		t.Fatalf("Get: %v %v", cred.Password, err)
	}
	if len(tokens.audiences) != 1 || tokens.audiences[0] != AudienceAWSSTS {
		t.Fatalf("token requested for audiences %v", tokens.audiences)
	}
	// The manager's identity and another ServiceAccount do not share it.
	other, _ := NewIdentity(AWS, "team-b", "puller", map[string]string{AnnotationAWSRoleARN: testRoleARN}, (&saTokens{}).fn("team-b", "puller"))
	_, err = c.Get(context.Background(), ecrHostName, other)
	mustClass(t, err, ErrAuthFailed, []string{"aws: STS AssumeRoleWithWebIdentity as ServiceAccount team-b/puller", ecrHostName, "InvalidIdentityToken"},
		saToken("team-b", "puller", AudienceAWSSTS))
	_, err = c.Get(context.Background(), ecrHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"aws: the default credential chain"})
}

func TestAWSWrongAudienceIsAuthenticationFailure(t *testing.T) {
	f := newFakeAWS(t)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	f.Accept(saToken("team-a", "puller", "some-other-audience"), testRoleARN)
	id, _ := NewIdentity(AWS, "team-a", "puller", map[string]string{AnnotationAWSRoleARN: testRoleARN}, (&saTokens{}).fn("team-a", "puller"))
	_, err := c.Get(context.Background(), ecrHostName, id)
	mustClass(t, err, ErrAuthFailed, []string{"STS AssumeRoleWithWebIdentity", "Incorrect token audience"}, saToken("team-a", "puller", AudienceAWSSTS))
	if f.ECR.Hits.Load() != 0 {
		t.Fatal("ECR asked without credentials")
	}
}

func TestAWSServiceAccountPodIdentity(t *testing.T) {
	f := newFakeAWS(t)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	tokens := &saTokens{}
	id, err := NewIdentity(AWS, "team-a", "puller", nil, tokens.fn("team-a", "puller"))
	if err != nil {
		t.Fatal(err)
	}
	// Without the agent: refused, with what to do.
	_, err = c.Get(context.Background(), ecrHostName, id)
	mustClass(t, err, ErrUnsupported, []string{"eks.amazonaws.com/role-arn", "EKS Pod Identity"})
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f.Pod.URL()+"/v1/credentials")
	f.SetPodToken(saToken("team-a", "puller", AudienceEKSPodIdentity))
	cred, err := c.Get(context.Background(), ecrHostName, id)
	if err != nil || cred.Password != "ecr-password-1" {
		t.Fatalf("Get: %v %v", cred.Password, err)
	}
	if tokens.audiences[len(tokens.audiences)-1] != AudienceEKSPodIdentity {
		t.Fatalf("audiences %v", tokens.audiences)
	}
}

func TestAWSMissingIdentity(t *testing.T) {
	newFakeAWS(t)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	_, err := c.Get(context.Background(), ecrHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"aws: the default credential chain for " + ecrHostName})
}

func TestAWSEndpointDownIsUnavailableThenRecovers(t *testing.T) {
	f := newFakeAWS(t)
	f.irsaManager(t)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	f.STS.Down()
	_, err := c.Get(context.Background(), ecrHostName, nil)
	mustClass(t, err, ErrUnavailable, []string{"aws:", ecrHostName})
	f.STS.Up()
	if cred, err := c.Get(context.Background(), ecrHostName, nil); err != nil || cred.Password == "" {
		t.Fatalf("after STS came back: %v", err)
	}
	// ECR down after the identity was had.
	f.ECR.Down()
	c2, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	_, err = c2.Get(context.Background(), ecrHostName, nil)
	mustClass(t, err, ErrUnavailable, []string{"aws: ECR GetAuthorizationToken for " + ecrHostName})
	f.ECR.Up()
	if _, err := c2.Get(context.Background(), ecrHostName, nil); err != nil {
		t.Fatalf("after ECR came back: %v", err)
	}
}

// TestAWSRetryAfterRegistryRefusal: a registry that refuses a token
// before its stated expiry (403) gets a fresh one and one more try,
// within the same call.
func TestAWSRetryAfterRegistryRefusal(t *testing.T) {
	f := newFakeAWS(t)
	f.irsaManager(t)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	ctx := context.Background()
	creds := c.CredentialFunc(nil)
	valid := map[string]bool{}
	pull := func(ctx context.Context) error {
		cred, err := creds(ctx, ecrHostName)
		if err != nil {
			return err
		}
		if !valid[cred.Password] {
			return fmt.Errorf("GET manifest: 403: %w", errdef.ErrDenied)
		}
		return nil
	}
	// First sync: fine.
	if err := c.Retry(ctx, ecrHostName, nil, func(ctx context.Context) error {
		cred, _ := creds(ctx, ecrHostName)
		valid[cred.Password] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The token expires early at the registry.
	clear(valid)
	valid["ecr-password-2"] = true
	runs := 0
	err := c.Retry(ctx, ecrHostName, nil, func(ctx context.Context) error { runs++; return pull(ctx) })
	if err != nil || runs != 2 {
		t.Fatalf("Retry = %v after %d runs, want success after 2", err, runs)
	}
	if f.Current() != "ecr-password-2" {
		t.Fatalf("ECR handed out %q", f.Current())
	}
	// A registry that keeps refusing gets exactly one retry.
	clear(valid)
	runs = 0
	err = c.Retry(ctx, ecrHostName, nil, func(ctx context.Context) error { runs++; return pull(ctx) })
	if !errors.Is(err, errdef.ErrDenied) || runs != 2 {
		t.Fatalf("Retry = %v after %d runs, want ErrDenied after 2", err, runs)
	}
	// A failure to get the credential is not a registry refusal.
	if RefusedByRegistry(&Error{Kind: ErrAuthFailed, Err: errdef.ErrDenied}) {
		t.Fatal("an identity failure counted as a registry refusal")
	}
}

// TestAWSCABundle: with AWS_CA_BUNDLE set, as on hosts whose AWS
// endpoints sit behind a TLS proxy, the SDK adds its roots to our client
// (it refused to load its configuration with a plain *http.Client) and
// keeps our dial restrictions.
func TestAWSCABundle(t *testing.T) {
	f := newFakeAWS(t)
	f.irsaManager(t)
	sts := cloudtest.NewEndpoint(t, true, f.STS.Handler())
	ecr := cloudtest.NewEndpoint(t, true, f.ECR.Handler())
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL())
	t.Setenv("AWS_ENDPOINT_URL_ECR", ecr.URL())
	dir := t.TempDir()
	bundle := filepath.Join(dir, "ca.pem")
	var pemData []byte
	for _, e := range []*cloudtest.Endpoint{sts, ecr} {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Certificate().Raw})...)
	}
	if err := os.WriteFile(bundle, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	cred, err := c.Get(context.Background(), ecrHostName, nil)
	if err != nil || cred.Password != "ecr-password-1" {
		t.Fatalf("Get with AWS_CA_BUNDLE: %q %v", cred.Password, err)
	}
	if sts.Hits.Load() == 0 || ecr.Hits.Load() == 0 {
		t.Fatal("the TLS endpoints were not asked")
	}

	// The dial restrictions of our client still hold: a host name is
	// refused by the loopback-only dialer before any DNS look-up.
	t.Setenv("AWS_ENDPOINT_URL_ECR", strings.Replace(ecr.URL(), "127.0.0.1", "localhost", 1))
	c2, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	_, err = c2.Get(context.Background(), ecrHostName, nil)
	mustClass(t, err, ErrUnavailable, []string{"ECR GetAuthorizationToken", "loopback only"})

	// A bundle that is not PEM fails clearly, as the SDK has it.
	if err := os.WriteFile(bundle, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	c3, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	_, err = c3.Get(context.Background(), ecrHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"loading the AWS configuration", "CA bundle"})
}

// TestAWSManagerPodIdentityAndInstanceMetadata: the other links of the
// default chain the manager may run with: the EKS Pod Identity agent
// (its token file), and failing that the node's instance metadata
// (IMDSv2), both through the manager's HTTP client.
func TestAWSManagerPodIdentityAndInstanceMetadata(t *testing.T) {
	f := newFakeAWS(t)
	ctx := context.Background()

	podToken := saToken("ocisync-system", "ocisync-manager", AudienceEKSPodIdentity)
	file := filepath.Join(t.TempDir(), "eks-pod-identity-token")
	if err := os.WriteFile(file, []byte(podToken), 0o600); err != nil {
		t.Fatal(err)
	}
	f.SetPodToken(podToken)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f.Pod.URL()+"/v1/credentials")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", file)
	c, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	if cred, err := c.Get(ctx, ecrHostName, nil); err != nil || cred.Password != "ecr-password-1" {
		t.Fatalf("EKS Pod Identity: %q %v", cred.Password, err)
	}
	if f.Pod.Hits.Load() == 0 || f.STS.Hits.Load() != 0 {
		t.Fatalf("agent asked %d times, STS %d times", f.Pod.Hits.Load(), f.STS.Hits.Load())
	}

	// Instance metadata, IMDSv2: a session token first, then the role's
	// credentials, handed out by the fake's key maker through the agent.
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "")
	var imdsPaths []string
	var mu sync.Mutex
	imds := cloudtest.NewEndpoint(t, false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		imdsPaths = append(imdsPaths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
			fmt.Fprint(w, "imds-session")
		case r.Header.Get("X-Aws-Ec2-Metadata-Token") != "imds-session":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			fmt.Fprint(w, "node-role")
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/node-role":
			// The agent's answer is the same JSON, with a Code.
			req, _ := http.NewRequest(http.MethodGet, f.Pod.URL()+"/v1/credentials", nil)
			req.Header.Set("Authorization", podToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			defer resp.Body.Close()
			var creds map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&creds)
			creds["Code"], creds["Type"], creds["LastUpdated"] = "Success", "AWS-HMAC", time.Now().UTC().Format(time.RFC3339)
			_ = json.NewEncoder(w).Encode(creds)
		default:
			http.NotFound(w, r)
		}
	})
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL())
	c2, _ := New(AWS, Options{HTTPClient: cloudtest.LoopbackClient(nil)})
	if cred, err := c2.Get(ctx, ecrHostName, nil); err != nil || cred.Password != "ecr-password-2" {
		t.Fatalf("instance metadata: %q %v", cred.Password, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(imdsPaths, "PUT /latest/api/token") || !slices.Contains(imdsPaths, "GET /latest/meta-data/iam/security-credentials/node-role") {
		t.Fatalf("instance metadata requests %v", imdsPaths)
	}
}
