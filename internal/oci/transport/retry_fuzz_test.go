package transport

import (
	"net/http"
	"testing"
	"time"
)

// FuzzParseRetryAfter checks that parseRetryAfter never panics, that
// delta-seconds never give a negative wait, and that responseWait turns
// any header into a wait within MaxRetryAfter or a refusal to wait.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{
		"0", "1", "120", "-1", "+5", " 7 ", "1.5", "9223372036854775807", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Fri, 31 Dec 9999 23:59:59 GMT", "soon", "", "\x00",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if !ok && d != 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, false", v, d)
		}
		r := &Retry{Now: func() time.Time { return now }, MaxRetryAfter: time.Minute}
		resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {v}}}
		wait, ok := r.responseWait(resp, 1)
		if ok && (wait < 0 || wait > time.Minute) {
			t.Fatalf("Retry-After %q gives a wait of %v, outside [0, 1m]", v, wait)
		}
	})
}
