package cloudauth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	acrHostName = "myregistry.azurecr.io"
	azTenant    = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	azClient    = "11111111-2222-3333-4444-555555555555"
	azSAClient  = "99999999-2222-3333-4444-555555555555"
)

// fakeAzure is Entra ID (over TLS, as MSAL requires) and an ACR
// exchange endpoint. Entra ID accepts a client assertion only when it is
// the token of the ServiceAccount federated with the client.
type fakeAzure struct {
	aad, acr *endpoint
	pool     *x509.CertPool
	mu       sync.Mutex
	n        int
	// federated maps a client ID to the assertion it accepts.
	federated map[string]string
	refresh   []string
}

func newFakeAzure(t *testing.T) *fakeAzure {
	f := &fakeAzure{federated: map[string]string{}}
	f.aad = newEndpoint(t, true, f.serveAAD)
	f.acr = newEndpoint(t, false, f.serveACR)
	f.pool = x509.NewCertPool()
	f.pool.AddCert(f.aad.srv.Certificate())
	t.Setenv("AZURE_AUTHORITY_HOST", f.aad.URL()+"/")
	t.Setenv("AZURE_TENANT_ID", azTenant)
	return f
}

func (f *fakeAzure) options() Options {
	return Options{
		HTTPClient:                    loopbackClient(f.pool),
		AzureDisableInstanceDiscovery: true,
		ACRExchangeURL:                func(string) string { return f.acr.URL() + "/oauth2/exchange" },
	}
}

func (f *fakeAzure) serveAAD(w http.ResponseWriter, r *http.Request) {
	base := "https://" + r.Host
	switch {
	case strings.HasSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration"):
		tenant := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]
		json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint":         base + "/" + tenant + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/" + tenant + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/" + tenant + "/v2.0",
		})
	case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
		r.ParseForm()
		f.mu.Lock()
		defer f.mu.Unlock()
		want, ok := f.federated[r.PostForm.Get("client_id")]
		if !ok || r.PostForm.Get("client_assertion") != want || !strings.HasPrefix(r.PostForm.Get("scope"), "https://management.azure.com/.default") {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS700211: No matching federated identity record found for presented assertion audience.","error_codes":[700211]}`)
			return
		}
		f.n++
		json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": fmt.Sprintf("aad-%d", f.n)})
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAzure) serveACR(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/oauth2/exchange" || r.PostForm.Get("grant_type") != "access_token" || r.PostForm.Get("service") != acrHostName ||
		!strings.HasPrefix(r.PostForm.Get("access_token"), "aad-") || r.PostForm.Get("tenant") == "" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"exchange refused"}]}`)
		return
	}
	tok := fakeJWT(map[string]any{"exp": time.Now().Add(3 * time.Hour).Unix(), "n": len(f.refresh) + 1, "tenant": r.PostForm.Get("tenant")})
	f.refresh = append(f.refresh, tok)
	json.NewEncoder(w).Encode(map[string]string{"refresh_token": tok})
}

func TestAzureManagerWorkloadIdentity(t *testing.T) {
	f := newFakeAzure(t)
	assertion := saToken("ocisync-system", "ocisync-manager", AudienceAzure)
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	os.WriteFile(file, []byte(assertion), 0o600)
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", file)
	t.Setenv("AZURE_CLIENT_ID", azClient)
	f.federated[azClient] = assertion
	clock := newFakeClock()
	o := f.options()
	o.Now = clock.Now
	c, _ := New(Azure, o)
	ctx := context.Background()
	cred, err := c.Get(ctx, acrHostName, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Username != acrUsername || cred.IdentityToken != f.refresh[0] || cred.Password != "" || strings.Contains(cred.String(), f.refresh[0]) {
		t.Fatalf("credential %v", cred)
	}
	if cred, _ = c.Get(ctx, acrHostName, nil); len(f.refresh) != 1 {
		t.Fatal("cached refresh token exchanged again")
	}
	// The refresh token's 3 hours: renewed after 2h24m.
	clock.Add(2*time.Hour + 30*time.Minute)
	if cred, err = c.Get(ctx, acrHostName, nil); err != nil || cred.IdentityToken != f.refresh[1] {
		t.Fatalf("renewal: %v", err)
	}
	hits := f.aad.hits.Load() + f.acr.hits.Load()
	for _, h := range []string{"myregistry.azurecr.io.evil.com", "ghcr.io", "myregistry.azurecr.de"} {
		_, err = c.Get(ctx, h, nil)
		mustClass(t, err, ErrHostRefused, []string{"azure: host check", h})
	}
	if f.aad.hits.Load()+f.acr.hits.Load() != hits {
		t.Fatal("requests for refused hosts")
	}
}

func TestAzureServiceAccount(t *testing.T) {
	f := newFakeAzure(t)
	c, _ := New(Azure, f.options())
	ctx := context.Background()
	tokens := &saTokens{}
	f.federated[azSAClient] = saToken("team-a", "puller", AudienceAzure)
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
	msi := newEndpoint(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_request","error_description":"No managed identity assigned"}`)
	})
	t.Setenv("IDENTITY_ENDPOINT", msi.URL()+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "header")
	c2, _ := New(Azure, f.options())
	_, err = c2.Get(ctx, acrHostName, nil)
	mustClass(t, err, ErrAuthFailed, []string{"azure: Entra ID token of the manager's identity"})
	if msi.hits.Load() == 0 {
		t.Fatal("managed identity endpoint not asked")
	}
}

func TestAzureExchangeRefusedAndDown(t *testing.T) {
	f := newFakeAzure(t)
	f.federated[azSAClient] = saToken("team-a", "puller", AudienceAzure)
	id, _ := NewIdentity(Azure, "team-a", "puller", map[string]string{AnnotationAzureClientID: azSAClient}, (&saTokens{}).fn("team-a", "puller"))
	o := f.options()
	o.HostAliases = map[string]string{"127.0.0.1:5000": "other.azurecr.io"}
	c, _ := New(Azure, o)
	// The exchange refuses a registry the token is not for.
	_, err := c.Get(context.Background(), "127.0.0.1:5000", id)
	mustClass(t, err, ErrAuthFailed, []string{"azure: ACR token exchange for 127.0.0.1:5000", "401", "UNAUTHORIZED"})
	// Entra ID down: unavailable.
	f.acr.down()
	c2, _ := New(Azure, f.options())
	_, err = c2.Get(context.Background(), acrHostName, id)
	mustClass(t, err, ErrUnavailable, []string{"azure: ACR token exchange"})
	f.acr.up()
	if _, err := c2.Get(context.Background(), acrHostName, id); err != nil {
		t.Fatalf("after the exchange came back: %v", err)
	}
}
