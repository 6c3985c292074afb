package cloudtest

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// AzureAssertionAudience is the audience of the ServiceAccount tokens
// Entra ID accepts as client assertions.
const AzureAssertionAudience = "api://AzureADTokenExchange"

// Azure is Entra ID (over TLS, as MSAL requires) and an ACR exchange
// endpoint for one registry. Entra ID accepts a client assertion only
// when it is a token of audience AzureAssertionAudience of the subject
// federated with the client (Federate); the exchange trades its access
// tokens for refresh tokens of Registry.
type Azure struct {
	AAD, ACR *Endpoint
	// Pool trusts AAD's certificate.
	Pool *x509.CertPool
	// Registry is the ACR login server the exchange is for.
	Registry string
	// NewRefreshToken, if set, makes the refresh token the exchange hands
	// out (under the fake's lock); nil: an unsigned JWT valid 3 hours.
	NewRefreshToken func() string

	mu        sync.Mutex
	n         int
	federated map[string]string // client ID -> subject
	refresh   []string
}

// NewAzure starts the endpoints. The test points AZURE_AUTHORITY_HOST at
// AuthorityHost and the ACR exchange (Options.ACRExchangeURL) at
// ExchangeURL.
func NewAzure(t T, registry string) *Azure {
	f := &Azure{Registry: registry, federated: map[string]string{}}
	f.AAD = NewEndpoint(t, true, f.serveAAD)
	f.ACR = NewEndpoint(t, false, f.serveACR)
	f.Pool = x509.NewCertPool()
	f.Pool.AddCert(f.AAD.Certificate())
	return f
}

// AuthorityHost is the value of AZURE_AUTHORITY_HOST for the fake.
func (f *Azure) AuthorityHost() string { return f.AAD.URL() + "/" }

// ExchangeURL is the fake's ACR exchange endpoint.
func (f *Azure) ExchangeURL() string { return f.ACR.URL() + "/oauth2/exchange" }

// Federate lets client ID clientID be had with a token of subject.
func (f *Azure) Federate(clientID, subject string) {
	f.mu.Lock()
	f.federated[clientID] = subject
	f.mu.Unlock()
}

// RefreshTokens are the refresh tokens handed out, oldest first.
func (f *Azure) RefreshTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refresh...)
}

func (f *Azure) serveAAD(w http.ResponseWriter, r *http.Request) {
	base := "https://" + r.Host
	switch {
	case strings.HasSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration"):
		tenant := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint":         base + "/" + tenant + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/" + tenant + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/" + tenant + "/v2.0",
		})
	case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
		_ = r.ParseForm()
		f.mu.Lock()
		defer f.mu.Unlock()
		sub, ok := f.federated[r.PostForm.Get("client_id")]
		if !ok || !ReadClaims(r.PostForm.Get("client_assertion")).Is(sub, AzureAssertionAudience) ||
			!strings.HasPrefix(r.PostForm.Get("scope"), "https://management.azure.com/.default") {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS700211: No matching federated identity record found for presented assertion audience.","error_codes":[700211]}`)
			return
		}
		f.n++
		_ = json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": fmt.Sprintf("aad-%d", f.n)})
	default:
		http.NotFound(w, r)
	}
}

func (f *Azure) serveACR(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/oauth2/exchange" || r.PostForm.Get("grant_type") != "access_token" || r.PostForm.Get("service") != f.Registry ||
		!strings.HasPrefix(r.PostForm.Get("access_token"), "aad-") || r.PostForm.Get("tenant") == "" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"exchange refused"}]}`)
		return
	}
	var tok string
	if f.NewRefreshToken != nil {
		tok = f.NewRefreshToken()
	} else {
		tok = FakeJWT(map[string]any{"exp": time.Now().Add(3 * time.Hour).Unix(), "n": len(f.refresh) + 1, "tenant": r.PostForm.Get("tenant")})
	}
	f.refresh = append(f.refresh, tok)
	_ = json.NewEncoder(w).Encode(map[string]string{"refresh_token": tok})
}
