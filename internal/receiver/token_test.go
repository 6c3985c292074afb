package receiver

import (
	"encoding/hex"
	"net/http/httptest"
	"testing"
)

func TestBearerAuthorized(t *testing.T) {
	for _, tc := range []struct {
		name, header, token string
		want                bool
	}{
		{"the token", "Bearer s3cret", "s3cret", true},
		{"the scheme in any case", "bearer s3cret", "s3cret", true},
		{"another token", "Bearer s3cres", "s3cret", false},
		{"a prefix of the token", "Bearer s3c", "s3cret", false},
		{"no header", "", "s3cret", false},
		{"basic auth", "Basic czNjcmV0", "s3cret", false},
		{"no token configured", "Bearer ", "", false},
		{"the token without a scheme", "s3cret", "s3cret", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/hooks/distribution", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := bearerAuthorized(r, tc.token); got != tc.want {
				t.Errorf("bearerAuthorized(%q, %q) = %v, want %v", tc.header, tc.token, got, tc.want)
			}
		})
	}
}

func TestHeaderAuthorized(t *testing.T) {
	for _, tc := range []struct {
		name, header, token string
		want                bool
	}{
		{"Bearer and the token", "Bearer s3cret", "s3cret", true},
		{"the token alone", "s3cret", "s3cret", true},
		{"the token alone, spaces around", " s3cret ", "s3cret", true},
		{"another token alone", "s3cres", "s3cret", false},
		{"another scheme", "Basic s3cret", "s3cret", false},
		{"no header", "", "s3cret", false},
		{"no token configured", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/hooks/harbor", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := headerAuthorized(r, tc.token); got != tc.want {
				t.Errorf("headerAuthorized(%q, %q) = %v, want %v", tc.header, tc.token, got, tc.want)
			}
		})
	}
}

func TestBearerOrQueryAuthorized(t *testing.T) {
	for _, tc := range []struct {
		name, target, header, token string
		want                        bool
	}{
		{"token in the query", "/hooks/quay?token=s3cret", "", "s3cret", true},
		{"access_token in the query", "/hooks/quay?access_token=s3cret", "", "s3cret", true},
		{"among other parameters", "/hooks/quay?a=1&token=s3cret&b=2", "", "s3cret", true},
		{"escaped", "/hooks/quay?token=s3%2Fcret", "", "s3/cret", true},
		{"Bearer header", "/hooks/quay", "Bearer s3cret", "s3cret", true},
		{"a wrong header does not spoil the right query", "/hooks/gar?token=s3cret", "Bearer eyJhbGciOiJSUzI1NiJ9.jwt", "s3cret", true},
		{"another token in the query", "/hooks/quay?token=s3cres", "", "s3cret", false},
		{"another parameter name", "/hooks/quay?secret=s3cret", "", "s3cret", false},
		{"the token without a scheme is not enough here", "/hooks/quay", "s3cret", "s3cret", false},
		{"nothing", "/hooks/quay", "", "s3cret", false},
		{"an empty token in the query, none configured", "/hooks/quay?token=", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", tc.target, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := bearerOrQueryAuthorized(r, tc.token); got != tc.want {
				t.Errorf("bearerOrQueryAuthorized(%s, %q) = %v, want %v", tc.target, tc.header, got, tc.want)
			}
		})
	}
}

func TestSignatureAuthorized(t *testing.T) {
	body := []byte(`{"action":"published"}`)
	good := "sha256=" + hex.EncodeToString(sign(body, "s3cret"))
	changed := append([]byte{}, body...)
	changed[3] ^= 1
	for _, tc := range []struct {
		name, signature, token string
		body                   []byte
		want                   bool
	}{
		{"signed with the token", good, "s3cret", body, true},
		{"a body changed by one byte", good, "s3cret", changed, false},
		{"signed with another token", "sha256=" + hex.EncodeToString(sign(body, "other")), "s3cret", body, false},
		{"no signature", "", "s3cret", body, false},
		{"no sha256= prefix", hex.EncodeToString(sign(body, "s3cret")), "s3cret", body, false},
		{"the SHA-1 header's form", "sha1=" + hex.EncodeToString(sign(body, "s3cret")), "s3cret", body, false},
		{"not hex", "sha256=zz", "s3cret", body, false},
		{"no token configured", "sha256=" + hex.EncodeToString(sign(body, "")), "", body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/hooks/github", nil)
			if tc.signature != "" {
				r.Header.Set(signatureHeader, tc.signature)
			}
			if got := signatureAuthorized(r, tc.body, tc.token); got != tc.want {
				t.Errorf("signatureAuthorized = %v, want %v", got, tc.want)
			}
		})
	}
}
