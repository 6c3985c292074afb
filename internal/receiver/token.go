package receiver

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// bearerAuthorized reports whether r carries "Authorization: Bearer
// token". The comparison takes the same time whatever the token sent, so
// that its timing does not reveal how much of it was right; an empty
// token authorizes nothing.
func bearerAuthorized(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	scheme, sent, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(sent)), []byte(token)) == 1
}
