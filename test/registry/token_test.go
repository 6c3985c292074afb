package registrytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testUsers = []User{
	{Name: "alice", Password: "alice-secret-pw"},
	{Name: "reader", Password: "reader-secret-pw", Actions: []string{"pull"}},
}

func TestTokenIssuer(t *testing.T) {
	pki := NewPKI(t)
	strict := NewTokenIssuer(t, TokenOptions{Users: testUsers, PKI: pki})
	anon := NewTokenIssuer(t, TokenOptions{Users: testUsers, AllowAnonymous: true, AnonymousActions: []string{"pull"}})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig()}, Timeout: 10 * time.Second}

	get := func(ti *TokenIssuer, service, user, pass string, scopes ...string) *http.Request {
		q := url.Values{"service": {service}, "scope": scopes}
		req, _ := http.NewRequest(http.MethodGet, ti.Realm+"?"+q.Encode(), nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		return req
	}
	post := func(ti *TokenIssuer, form url.Values) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, ti.Realm, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req
	}
	pushPull := "repository:team/app:pull,push"

	tests := []struct {
		name       string
		issuer     *TokenIssuer
		req        *http.Request
		wantStatus int
		wantSub    string
		wantAccess []resourceActions
	}{
		{"anonymous refused when login required", strict, get(strict, DefaultService, "", "", pushPull), 401, "", nil},
		{"anonymous granted pull only", anon, get(anon, DefaultService, "", "", pushPull), 200, "",
			[]resourceActions{{"repository", "team/app", []string{"pull"}}}},
		{"anonymous ping without scope", anon, get(anon, DefaultService, "", ""), 200, "", []resourceActions{}},
		{"writer granted pull and push", strict, get(strict, DefaultService, "alice", "alice-secret-pw", pushPull), 200, "alice",
			[]resourceActions{{"repository", "team/app", []string{"pull", "push"}}}},
		{"read-only user granted pull only", strict, get(strict, DefaultService, "reader", "reader-secret-pw", pushPull), 200, "reader",
			[]resourceActions{{"repository", "team/app", []string{"pull"}}}},
		{"read-only user asking push only gets nothing", strict, get(strict, DefaultService, "reader", "reader-secret-pw", "repository:x:push"), 200, "reader",
			[]resourceActions{}},
		{"several scopes in one parameter and catalog ignored", strict,
			get(strict, DefaultService, "alice", "alice-secret-pw", "repository:a:pull repository:b:push", "registry:catalog:*"), 200, "alice",
			[]resourceActions{{"repository", "a", []string{"pull"}}, {"repository", "b", []string{"push"}}}},
		{"wrong password", strict, get(strict, DefaultService, "alice", "not-the-password", pushPull), 401, "", nil},
		{"unknown user", strict, get(strict, DefaultService, "mallory", "alice-secret-pw", pushPull), 401, "", nil},
		{"wrong service", strict, get(strict, "other", "alice", "alice-secret-pw", pushPull), 400, "", nil},
		{"oauth2 refresh_token grant", strict, post(strict, url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {strict.RefreshToken("reader")},
			"service": {DefaultService}, "scope": {pushPull}, "client_id": {"test"}}), 200, "reader",
			[]resourceActions{{"repository", "team/app", []string{"pull"}}}},
		{"oauth2 password grant", strict, post(strict, url.Values{
			"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-secret-pw"},
			"service": {DefaultService}, "scope": {pushPull}}), 200, "alice",
			[]resourceActions{{"repository", "team/app", []string{"pull", "push"}}}},
		{"oauth2 unknown refresh token", strict, post(strict, url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {"refresh-forged"}, "service": {DefaultService}}), 401, "", nil},
		{"oauth2 unsupported grant", strict, post(strict, url.Values{
			"grant_type": {"client_credentials"}, "service": {DefaultService}}), 400, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.issuer.Count()
			resp, err := client.Do(tt.req)
			if err != nil {
				t.Fatalf("request token: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if got := tt.issuer.Count(); got != before+1 {
				t.Errorf("Count() went from %d to %d, want one more", before, got)
			}
			for _, u := range testUsers {
				if strings.Contains(string(body), u.Password) {
					t.Errorf("response body reveals the password of %s: %s", u.Name, body)
				}
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			var tr struct {
				Token       string `json:"token"`
				AccessToken string `json:"access_token"`
				ExpiresIn   int    `json:"expires_in"`
			}
			if err := json.Unmarshal(body, &tr); err != nil {
				t.Fatalf("decode token response %s: %v", body, err)
			}
			if tr.AccessToken == "" || tr.ExpiresIn < 60 {
				t.Fatalf("token response %s lacks access_token or expires_in >= 60", body)
			}
			if tt.req.Method == http.MethodGet && tr.Token != tr.AccessToken {
				t.Errorf("GET response: token and access_token differ")
			}
			claims := verifyJWT(t, tt.issuer, tr.AccessToken)
			if claims.Sub != tt.wantSub {
				t.Errorf("sub = %q, want %q", claims.Sub, tt.wantSub)
			}
			if !reflect.DeepEqual(claims.Access, tt.wantAccess) {
				t.Errorf("access = %+v, want %+v", claims.Access, tt.wantAccess)
			}
		})
	}
}

type jwtClaims struct {
	Iss    string            `json:"iss"`
	Sub    string            `json:"sub"`
	Aud    string            `json:"aud"`
	Exp    int64             `json:"exp"`
	Nbf    int64             `json:"nbf"`
	Iat    int64             `json:"iat"`
	Jti    string            `json:"jti"`
	Access []resourceActions `json:"access"`
}

// verifyJWT checks the token the way the registry does: ES256 signature by
// the key named in the JWKS file, issuer, audience and validity window.
func verifyJWT(t *testing.T, ti *TokenIssuer, tok string) jwtClaims {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	b64 := base64.RawURLEncoding
	var header map[string]string
	decodePart(t, parts[0], &header)
	if header["alg"] != "ES256" || header["kid"] == "" {
		t.Fatalf("header %v: want alg ES256 and a kid", header)
	}

	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	raw, err := os.ReadFile(ti.JWKSFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("JWKS %s: %v, %d keys", raw, err, len(jwks.Keys))
	}
	k := jwks.Keys[0]
	if k["kid"] != header["kid"] {
		t.Fatalf("token kid %q not in JWKS (%q)", header["kid"], k["kid"])
	}
	x, _ := b64.DecodeString(k["x"])
	y, _ := b64.DecodeString(k["y"])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatalf("JWKS key: %v", err)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %v, %d bytes, want 64", err, len(sig))
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatalf("signature does not verify with the JWKS key")
	}

	var c jwtClaims
	decodePart(t, parts[1], &c)
	now := time.Now().Unix()
	if c.Iss != ti.Issuer || c.Aud != ti.Service {
		t.Errorf("iss %q aud %q, want %q %q", c.Iss, c.Aud, ti.Issuer, ti.Service)
	}
	if c.Exp <= now || c.Nbf > now || c.Iat > now || c.Jti == "" {
		t.Errorf("claims exp=%d nbf=%d iat=%d jti=%q not valid at %d", c.Exp, c.Nbf, c.Iat, c.Jti, now)
	}
	if c.Access == nil {
		t.Errorf("access claim missing; the registry expects a list")
	}
	return c
}

func decodePart(t *testing.T, part string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatalf("decode JWT part: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode JWT part %s: %v", b, err)
	}
}
