package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// tokenMatches reports whether sent is token. The comparison takes the
// same time whatever the token sent, so that its timing does not reveal
// how much of it was right; an empty token authorizes nothing.
func tokenMatches(sent, token string) bool {
	if token == "" || sent == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(sent), []byte(token)) == 1
}

// bearerAuthorized reports whether r carries "Authorization: Bearer
// token".
func bearerAuthorized(r *http.Request, token string) bool {
	scheme, sent, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return tokenMatches(strings.TrimSpace(sent), token)
}

// headerAuthorized reports whether r's Authorization header is
// "Bearer token" or the token alone: senders such as Harbor send a
// configured header value verbatim, with or without a scheme.
func headerAuthorized(r *http.Request, token string) bool {
	return bearerAuthorized(r, token) || tokenMatches(strings.TrimSpace(r.Header.Get("Authorization")), token)
}

// queryParams are the URL query parameters a token may come in, for
// senders that cannot set a header: token, and access_token, the name
// the CloudEvents webhook specification gives it.
var queryParams = []string{"token", "access_token"}

// queryAuthorized reports whether r's URL carries the token in a query
// parameter. Such a URL holds the secret: it must go over HTTPS and stay
// out of access logs.
func queryAuthorized(r *http.Request, token string) bool {
	q := r.URL.Query()
	ok := false
	for _, name := range queryParams {
		// Every name is compared, so that the time taken does not tell
		// which one was there.
		if tokenMatches(q.Get(name), token) {
			ok = true
		}
	}
	return ok
}

// bearerOrQueryAuthorized accepts the token in an Authorization: Bearer
// header or in the URL's query.
func bearerOrQueryAuthorized(r *http.Request, token string) bool {
	return bearerAuthorized(r, token) || queryAuthorized(r, token)
}

// signatureHeader carries GitHub's signature of a delivery: "sha256="
// and the hex HMAC-SHA256 of the raw body keyed by the webhook secret.
const signatureHeader = "X-Hub-Signature-256"

// signatureAuthorized reports whether r's body is signed with token the
// way GitHub signs deliveries.
func signatureAuthorized(r *http.Request, body []byte, token string) bool {
	if token == "" {
		return false
	}
	sent, ok := strings.CutPrefix(strings.TrimSpace(r.Header.Get(signatureHeader)), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sent)
	if err != nil {
		return false
	}
	return hmac.Equal(got, sign(body, token))
}

// sign is the HMAC-SHA256 of body keyed by token.
func sign(body []byte, token string) []byte {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write(body)
	return mac.Sum(nil)
}
