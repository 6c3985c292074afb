package cloudauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/metadata"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/google/externalaccount"

	"github.com/ocisync/ocisync/internal/oci/auth"
)

const (
	gcpScope = "https://www.googleapis.com/auth/cloud-platform"
	// gcpUsername is what Artifact Registry and Container Registry take
	// with an access token as the password.
	gcpUsername       = "oauth2accesstoken"
	googleSTS         = "https://sts.googleapis.com/v1/token"
	googleIAMCreds    = "https://iamcredentials.googleapis.com"
	jwtTokenType      = "urn:ietf:params:oauth:token-type:jwt"
	gkeClusterMissing = "the metadata server names no GKE cluster (instance attributes cluster-name and cluster-location); a ServiceAccount's own identity works on GKE with Workload Identity only"
)

type gcpSource struct {
	c *Credentials

	mu  sync.Mutex
	gke *gkeCluster // read once, on the first per-ServiceAccount fetch
}

// gkeCluster is where the manager runs, which names the workload
// identity pool and provider of its ServiceAccounts.
type gkeCluster struct {
	project, location, name string
}

func newGCP(c *Credentials) *gcpSource { return &gcpSource{c: c} }

// key: one access token serves every Google registry.
func (*gcpSource) key(string) string { return "gcp" }

func (s *gcpSource) fetch(ctx context.Context, _, host string, id *Identity) (auth.Credential, time.Time, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.c.hc)
	var ts oauth2.TokenSource
	step := "Application Default Credentials"
	if id == nil {
		// A new source each time: the cache above keeps the token, and a
		// fetch after Invalidate must not get the same one back.
		creds, err := google.FindDefaultCredentials(ctx, gcpScope)
		if err != nil {
			return auth.Credential{}, time.Time{}, gcpError(host, step, err)
		}
		ts = creds.TokenSource
	} else {
		var err error
		step = "STS token exchange for " + id.String()
		if ts, err = s.identitySource(ctx, host, id); err != nil {
			return auth.Credential{}, time.Time{}, err
		}
	}
	tok, err := ts.Token()
	if err != nil {
		return auth.Credential{}, time.Time{}, gcpError(host, step, err)
	}
	if tok.AccessToken == "" {
		return auth.Credential{}, time.Time{}, &Error{Provider: GCP, Host: host, Step: step, Kind: ErrAuthFailed, Err: errors.New("no access token in the response")}
	}
	return auth.Credential{Username: gcpUsername, Password: tok.AccessToken}, tok.Expiry, nil
}

// identitySource exchanges a token of id's ServiceAccount at Google's
// STS (GKE Workload Identity Federation), then impersonates the
// annotated IAM service account if there is one.
func (s *gcpSource) identitySource(ctx context.Context, host string, id *Identity) (oauth2.TokenSource, error) {
	cluster, err := s.cluster(ctx, host)
	if err != nil {
		return nil, err
	}
	pool := cluster.project + ".svc.id.goog"
	conf := externalaccount.Config{
		Audience: fmt.Sprintf("identitynamespace:%s:https://container.googleapis.com/v1/projects/%s/locations/%s/clusters/%s",
			pool, cluster.project, cluster.location, cluster.name),
		SubjectTokenType:     jwtTokenType,
		TokenURL:             or(s.c.opts.GoogleSTSURL, googleSTS),
		Scopes:               []string{gcpScope},
		SubjectTokenSupplier: subjectToken{id: id, audience: pool},
	}
	if id.gcpServiceAccount != "" {
		conf.ServiceAccountImpersonationURL = or(s.c.opts.GoogleIAMCredentialsURL, googleIAMCreds) +
			"/v1/projects/-/serviceAccounts/" + url.PathEscape(id.gcpServiceAccount) + ":generateAccessToken"
	}
	ts, err := externalaccount.NewTokenSource(ctx, conf)
	if err != nil {
		return nil, &Error{Provider: GCP, Host: host, Step: "configuring the STS token exchange for " + id.String(), Kind: ErrUnsupported, Err: err}
	}
	return ts, nil
}

// cluster reads the GKE cluster from the metadata server, once.
func (s *gcpSource) cluster(ctx context.Context, host string) (gkeCluster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gke != nil {
		return *s.gke, nil
	}
	md := metadata.NewClient(s.c.hc)
	var c gkeCluster
	for _, f := range []struct {
		dst  *string
		path string
	}{
		{&c.project, "project/project-id"},
		{&c.location, "instance/attributes/cluster-location"},
		{&c.name, "instance/attributes/cluster-name"},
	} {
		v, err := md.GetWithContext(ctx, f.path)
		var nde metadata.NotDefinedError
		if errors.As(err, &nde) {
			return gkeCluster{}, &Error{Provider: GCP, Host: host, Step: "reading the GKE cluster from the metadata server", Kind: ErrUnsupported, Err: errors.New(gkeClusterMissing)}
		}
		if err != nil {
			return gkeCluster{}, gcpError(host, "reading the GKE cluster from the metadata server", err)
		}
		*f.dst = strings.TrimSpace(v)
	}
	s.gke = &c
	return c, nil
}

// subjectToken supplies the ServiceAccount's token to the exchange.
type subjectToken struct {
	id       *Identity
	audience string
}

func (t subjectToken) SubjectToken(ctx context.Context, _ externalaccount.SupplierOptions) (string, error) {
	tok, err := t.id.Token(ctx, t.audience)
	if err != nil {
		return "", fmt.Errorf("requesting a token of %s for audience %s: %w", t.id, t.audience, err)
	}
	return tok, nil
}

var googleStatus = lazyRegexp(`status code ([0-9]{3})`)

// gcpError classifies an error of the Google libraries: a metadata
// server error by its code, an STS or IAM Credentials error by the status
// in its message.
func gcpError(host, step string, err error) error {
	status := 0
	var me *metadata.Error
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &me):
		status = me.Code
	case errors.As(err, &re) && re.Response != nil:
		status = re.Response.StatusCode
	default:
		if m := googleStatus().FindStringSubmatch(err.Error()); m != nil {
			status, _ = strconv.Atoi(m[1])
		}
	}
	return classify(GCP, host, step, status, err)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
