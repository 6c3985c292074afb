package receiver

import (
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
