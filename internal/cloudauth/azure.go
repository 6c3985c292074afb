package cloudauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/ocisync/ocisync/internal/oci/auth"
)

// acrUsername is the user name ACR documents for refresh tokens.
const acrUsername = "00000000-0000-0000-0000-000000000000"

// acrScopes are the Entra ID scopes whose tokens ACR exchanges, per cloud
// (by login-server suffix).
var acrScopes = map[string]string{
	".azurecr.io": "https://management.azure.com/.default",
	".azurecr.cn": "https://management.chinacloudapi.cn/.default",
	".azurecr.us": "https://management.usgovcloudapi.net/.default",
}

// maxExchangeResponse bounds what is read from the ACR exchange.
const maxExchangeResponse = 1 << 20

type azureSource struct {
	c *Credentials

	mu         sync.Mutex
	manager    azcore.TokenCredential
	identities map[string]azcore.TokenCredential // by Identity.key
}

func newAzure(c *Credentials) *azureSource {
	return &azureSource{c: c, identities: map[string]azcore.TokenCredential{}}
}

// key: the refresh token is for one registry.
func (*azureSource) key(cloudHost string) string {
	return "azure\x00" + strings.ToLower(cloudHost)
}

func (s *azureSource) clientOptions() azcore.ClientOptions {
	o := azcore.ClientOptions{
		Transport: s.c.hc,
		// The controller retries the whole sync with backoff itself.
		Retry: policy.RetryOptions{MaxRetries: 1},
	}
	if h := s.c.getenv("AZURE_AUTHORITY_HOST"); h != "" {
		o.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: h}
	}
	return o
}

// credential is the manager's identity (workload identity when its token
// file is there, else managed identity), or id's ServiceAccount's.
func (s *azureSource) credential(host string, id *Identity) (azcore.TokenCredential, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	envTenant := s.c.getenv("AZURE_TENANT_ID")
	if id == nil {
		if s.manager != nil {
			return s.manager, envTenant, nil
		}
		var cred azcore.TokenCredential
		var err error
		step := "managed identity"
		if file := s.c.getenv("AZURE_FEDERATED_TOKEN_FILE"); file != "" {
			step = "workload identity"
			cred, err = azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
				ClientOptions: s.clientOptions(), DisableInstanceDiscovery: s.c.opts.AzureDisableInstanceDiscovery,
				ClientID: s.c.getenv("AZURE_CLIENT_ID"), TenantID: envTenant, TokenFilePath: file,
			})
		} else {
			o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: s.clientOptions()}
			if v := s.c.getenv("AZURE_CLIENT_ID"); v != "" {
				o.ID = azidentity.ClientID(v)
			}
			cred, err = azidentity.NewManagedIdentityCredential(o)
		}
		if err != nil {
			return nil, "", &Error{Provider: Azure, Host: host, Step: step, Kind: ErrAuthFailed, Err: err}
		}
		s.manager = cred
		return cred, envTenant, nil
	}
	tenant := or(id.tenantID, envTenant)
	if tenant == "" {
		return nil, "", &Error{Provider: Azure, Host: host, Step: "reading the cloud identity of " + id.String(), Kind: ErrUnsupported,
			Err: fmt.Errorf("no tenant: annotate the ServiceAccount with %s or run the manager with Azure Workload Identity (AZURE_TENANT_ID)", AnnotationAzureTenantID)}
	}
	key := id.key()
	if cred, ok := s.identities[key]; ok {
		return cred, tenant, nil
	}
	cred, err := azidentity.NewClientAssertionCredential(tenant, id.clientID, func(ctx context.Context) (string, error) {
		tok, err := id.Token(ctx, AudienceAzure)
		if err != nil {
			return "", fmt.Errorf("requesting a token of %s for audience %s: %w", id, AudienceAzure, err)
		}
		return tok, nil
	}, &azidentity.ClientAssertionCredentialOptions{ClientOptions: s.clientOptions(), DisableInstanceDiscovery: s.c.opts.AzureDisableInstanceDiscovery})
	if err != nil {
		return nil, "", &Error{Provider: Azure, Host: host, Step: "client assertion for " + id.String(), Kind: ErrUnsupported, Err: err}
	}
	if len(s.identities) >= maxEntries {
		clear(s.identities)
	}
	s.identities[key] = cred
	return cred, tenant, nil
}

func (s *azureSource) fetch(ctx context.Context, cloudHost, host string, id *Identity) (auth.Credential, time.Time, error) {
	suffix, ok := acrSuffix(strings.ToLower(strings.TrimSuffix(cloudHost, ":443")))
	if !ok {
		return auth.Credential{}, time.Time{}, CheckHost(Azure, cloudHost)
	}
	cred, tenant, err := s.credential(host, id)
	if err != nil {
		return auth.Credential{}, time.Time{}, err
	}
	step := "Entra ID token of " + id.String()
	aad, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScopes[suffix]}})
	if err != nil {
		return auth.Credential{}, time.Time{}, azureError(host, step, err)
	}
	refresh, expires, err := s.exchange(ctx, cloudHost, host, tenant, aad.Token)
	if err != nil {
		return auth.Credential{}, time.Time{}, err
	}
	return auth.Credential{Username: acrUsername, IdentityToken: refresh}, expires, nil
}

// exchange trades an Entra ID access token for an ACR refresh token at
// the registry's /oauth2/exchange, which no SDK does.
func (s *azureSource) exchange(ctx context.Context, cloudHost, host, tenant, accessToken string) (string, time.Time, error) {
	const step = "ACR token exchange"
	endpoint := "https://" + host + "/oauth2/exchange"
	if s.c.opts.ACRExchangeURL != nil {
		endpoint = s.c.opts.ACRExchangeURL(host)
	}
	form := url.Values{
		"grant_type":   {"access_token"},
		"service":      {strings.TrimSuffix(strings.ToLower(cloudHost), ":443")},
		"access_token": {accessToken},
	}
	if tenant != "" {
		form.Set("tenant", tenant)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", time.Time{}, &Error{Provider: Azure, Host: host, Step: step, Kind: ErrUnsupported, Err: errors.New("bad exchange endpoint")}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.c.hc.Do(req)
	if err != nil {
		return "", time.Time{}, classify(Azure, host, step, 0, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxExchangeResponse))
	if err != nil {
		return "", time.Time{}, classify(Azure, host, step, 0, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", time.Time{}, classify(Azure, host, step, resp.StatusCode, fmt.Errorf("the registry answered %s%s", resp.Status, acrErrorDetail(body)))
	}
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.RefreshToken == "" {
		return "", time.Time{}, &Error{Provider: Azure, Host: host, Step: step, Kind: ErrAuthFailed, Err: errors.New("the response holds no refresh token")}
	}
	return out.RefreshToken, jwtExpiry(out.RefreshToken), nil
}

// acrErrorDetail quotes the error codes of an ACR error body, never
// anything else of it.
func acrErrorDetail(body []byte) string {
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	var b strings.Builder
	for _, x := range e.Errors {
		fmt.Fprintf(&b, "; %s: %.200s", x.Code, x.Message)
	}
	return b.String()
}

// jwtExpiry reads the exp claim of a JWT without verifying it (the
// registry does): it only tells when to renew. Zero when unreadable.
func jwtExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Int64()
	if err != nil || exp <= 0 {
		return time.Time{}
	}
	return time.Unix(exp, 0)
}

// azureError classifies an azidentity error by its response status.
func azureError(host, step string, err error) error {
	status := 0
	var afe *azidentity.AuthenticationFailedError
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &afe) && afe.RawResponse != nil:
		status = afe.RawResponse.StatusCode
	case errors.As(err, &re):
		status = re.StatusCode
	}
	return classify(Azure, host, step, status, err)
}
