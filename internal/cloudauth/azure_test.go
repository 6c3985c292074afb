package cloudauth

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocisync/ocisync/internal/cloudauth/cloudtest"
)

const (
	acrHostName = "myregistry.azurecr.io"
	azTenant    = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	azClient    = "11111111-2222-3333-4444-555555555555"
	azSAClient  = "99999999-2222-3333-4444-555555555555"
)

// fakeAzure is Entra ID over TLS and an ACR exchange for acrHostName.
type fakeAzure struct{ *cloudtest.Azure }

func newFakeAzure(t *testing.T) *fakeAzure {
	f := &fakeAzure{cloudtest.NewAzure(t, acrHostName)}
	t.Setenv("AZURE_AUTHORITY_HOST", f.AuthorityHost())
	t.Setenv("AZURE_TENANT_ID", azTenant)
	return f
}

func (f *fakeAzure) options() Options {
	return Options{
		HTTPClient:                    cloudtest.LoopbackClient(f.Pool),
		AzureDisableInstanceDiscovery: true,
		ACRExchangeURL:                func(string) string { return f.ExchangeURL() },
	}
}

func TestAzureManagerWorkloadIdentity(t *testing.T) {
	f := newFakeAzure(t)
	assertion := saToken("ocisync-system", "ocisync-manager", AudienceAzure)
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	os.WriteFile(file, []byte(assertion), 0o600)
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", file)
	t.Setenv("AZURE_CLIENT_ID", azClient)
	f.Federate(azClient, cloudtest.ServiceAccountSubject("ocisync-system", "ocisync-manager"))
	clock := &cloudtest.Clock{}
	o := f.options()
	o.Now = clock.Now
	c, _ := New(Azure, o)
	ctx := context.Background()
	cred, err := c.Get(ctx, acrHostName, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Username != acrUsername || cred.IdentityToken != f.RefreshTokens()[0] || cred.Password != "" || strings.Contains(cred.String(), f.RefreshTokens()[0]) {
		t.Fatalf("credential %v", cred)
	}
	if cred, _ = c.Get(ctx, acrHostName, nil); len(f.RefreshTokens()) != 1 {
		t.Fatal("cached refresh token exchanged again")
	}
	// The refresh token's 3 hours: renewed after 2h24m.
	clock.Add(2*time.Hour + 30*time.Minute)
	if cred, err = c.Get(ctx, acrHostName, nil); err != nil || cred.IdentityToken != f.RefreshTokens()[1] {
		t.Fatalf("renewal: %v", err)
	}
	hits := f.AAD.Hits.Load() + f.ACR.Hits.Load()
	for _, h := range []string{"myregistry.azurecr.io.evil.com", "ghcr.io", "myregistry.azurecr.de"} {
		_, err = c.Get(ctx, h, nil)
		mustClass(t, err, ErrHostRefused, []string{"azure: host check", h})
	}
	if f.AAD.Hits.Load()+f.ACR.Hits.Load() != hits {
		t.Fatal("requests for refused hosts")
	}
}

func TestAzureServiceAccount(t *testing.T) {
	f := newFakeAzure(t)
	c, _ := New(Azure, f.options())
	ctx := context.Background()
	tokens := &saTokens{}
	f.Federate(azSAClient, cloudtest.ServiceAccountSubject("team-a", "puller"))
	id, err := NewIdentity(Azure, "team-a", "puller", map[string]string{AnnotationAzureClientID: azSAClient}, tokens.fn("team-a", "puller"))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := c.Get(ctx, acrHostName, id)
	if err != nil || cred.IdentityToken == "" {
		t.Fatalf("Get: %v", err)
	}
	if tokens.audiences[0] != AudienceAzure {
		t.Fatalf("audiences %v", tokens.audiences)
	}
	// Another ServiceAccount naming the same client: Entra ID refuses its token.
	other, _ := NewIdentity(Azure, "team-b", "puller", map[string]string{AnnotationAzureClientID: azSAClient}, (&saTokens{}).fn("team-b", "puller"))
	_, err = c.Get(ctx, acrHostName, other)
	mustClass(t, err, ErrAuthFailed, []string{"azure: Entra ID token of ServiceAccount team-b/puller", acrHostName, "AADSTS700211"}, saToken("team-b", "puller", AudienceAzure))
	// The manager has no identity here (no token file, managed identity
	// refused by the fake App Service endpoint).
	msi := cloudtest.NewEndpoint(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_request","error_description":"No managed identity assigned"}`)
	})
	t.Setenv("IDENTITY_ENDPOINT", msi.URL()+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "header")
	c2, _ := New(Azure, f.options())
	_, err = c2.Get(ctx, acrHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"azure: Entra ID token of the manager's identity"})
	if msi.Hits.Load() == 0 {
		t.Fatal("managed identity endpoint not asked")
	}
}

func TestAzureEndpointsRefusedAndDown(t *testing.T) {
	f := newFakeAzure(t)
	f.Federate(azSAClient, cloudtest.ServiceAccountSubject("team-a", "puller"))
	id, _ := NewIdentity(Azure, "team-a", "puller", map[string]string{AnnotationAzureClientID: azSAClient}, (&saTokens{}).fn("team-a", "puller"))
	o := f.options()
	o.HostAliases = map[string]string{"127.0.0.1:5000": "other.azurecr.io"}
	c, _ := New(Azure, o)
	// The exchange refuses a registry the token is not for.
	_, err := c.Get(context.Background(), "127.0.0.1:5000", id)
	mustClass(t, err, ErrAuthFailed, []string{"azure: ACR token exchange for 127.0.0.1:5000", "401", "UNAUTHORIZED"})
	// The exchange down: unavailable.
	f.ACR.Down()
	c2, _ := New(Azure, f.options())
	_, err = c2.Get(context.Background(), acrHostName, id)
	mustClass(t, err, ErrUnavailable, []string{"azure: ACR token exchange"})
	f.ACR.Up()
	if _, err := c2.Get(context.Background(), acrHostName, id); err != nil {
		t.Fatalf("after the exchange came back: %v", err)
	}
	// Entra ID down: unavailable, and the exchange is not asked.
	f.AAD.Down()
	c3, _ := New(Azure, f.options())
	exchanges := f.ACR.Hits.Load()
	_, err = c3.Get(context.Background(), acrHostName, id)
	mustClass(t, err, ErrUnavailable, []string{"azure: Entra ID token of ServiceAccount team-a/puller", acrHostName})
	if f.ACR.Hits.Load() != exchanges {
		t.Fatal("the exchange was asked without an Entra ID token")
	}
	f.AAD.Up()
	if _, err := c3.Get(context.Background(), acrHostName, id); err != nil {
		t.Fatalf("after Entra ID came back: %v", err)
	}
}

// TestAzureGetenv: Options.Getenv, not the process environment, names
// the authority and the manager's workload identity.
func TestAzureGetenv(t *testing.T) {
	f := newFakeAzure(t)
	env := map[string]string{"AZURE_AUTHORITY_HOST": f.AuthorityHost(), "AZURE_TENANT_ID": azTenant, "AZURE_CLIENT_ID": azClient}
	t.Setenv("AZURE_AUTHORITY_HOST", "")
	t.Setenv("AZURE_TENANT_ID", "")
	assertion := saToken("ocisync-system", "ocisync-manager", AudienceAzure)
	env["AZURE_FEDERATED_TOKEN_FILE"] = filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(env["AZURE_FEDERATED_TOKEN_FILE"], []byte(assertion), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Federate(azClient, cloudtest.ServiceAccountSubject("ocisync-system", "ocisync-manager"))
	o := f.options()
	o.Getenv = func(k string) string { return env[k] }
	c, _ := New(Azure, o)
	cred, err := c.Get(context.Background(), acrHostName, nil)
	if err != nil || cred.IdentityToken == "" {
		t.Fatalf("Get: %v", err)
	}
	if f.AAD.Hits.Load() == 0 {
		t.Fatal("the fake authority was not asked")
	}
}
