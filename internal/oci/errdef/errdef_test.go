package errdef

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestResponseErrorError(t *testing.T) {
	tests := []struct {
		name string
		err  ResponseError
		want string
	}{
		{
			name: "no entries",
			err:  ResponseError{Method: "GET", URL: "https://r.example/v2/a/manifests/v1", StatusCode: 404},
			want: "GET https://r.example/v2/a/manifests/v1: 404 Not Found",
		},
		{
			name: "code and message",
			err:  ResponseError{Method: "GET", URL: "https://r.example/v2/a/manifests/v1", StatusCode: 404, Errors: []ErrorEntry{{Code: "MANIFEST_UNKNOWN", Message: "manifest unknown"}}},
			want: "GET https://r.example/v2/a/manifests/v1: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown",
		},
		{
			name: "several entries, code only, message only",
			err:  ResponseError{Method: "PUT", URL: "https://r.example/x", StatusCode: 400, Errors: []ErrorEntry{{Code: "DIGEST_INVALID"}, {Message: "also bad"}, {Code: "SIZE_INVALID", Message: "size"}}},
			want: "PUT https://r.example/x: 400 Bad Request: DIGEST_INVALID; also bad; SIZE_INVALID: size",
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%s: Error() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestResponseErrorIs(t *testing.T) {
	all := []error{ErrUnauthorized, ErrDenied, ErrNotFound, ErrManifestUnknown, ErrBlobUnknown, ErrTooManyRequests, ErrDigestMismatch, ErrSizeMismatch, ErrTooLarge, ErrUnsupported, ErrInvalidReference}
	tests := []struct {
		status int
		codes  []string
		want   []error
	}{
		{status: 401, want: []error{ErrUnauthorized}},
		{status: 403, want: []error{ErrDenied}},
		{status: 404, want: []error{ErrNotFound}},
		{status: 429, want: []error{ErrTooManyRequests}},
		{status: 413, want: []error{ErrTooLarge}},
		{status: 500},
		{status: 400},
		{status: 404, codes: []string{"MANIFEST_UNKNOWN"}, want: []error{ErrManifestUnknown, ErrNotFound}},
		{status: 404, codes: []string{"BLOB_UNKNOWN"}, want: []error{ErrBlobUnknown, ErrNotFound}},
		{status: 404, codes: []string{"NAME_UNKNOWN"}, want: []error{ErrNotFound}},
		{status: 401, codes: []string{"UNAUTHORIZED"}, want: []error{ErrUnauthorized}},
		{status: 403, codes: []string{"denied"}, want: []error{ErrDenied}}, // codes compare case-insensitively
		{status: 429, codes: []string{"TOOMANYREQUESTS"}, want: []error{ErrTooManyRequests}},
		{status: 400, codes: []string{"SIZE_INVALID"}, want: []error{ErrSizeMismatch}},
		{status: 400, codes: []string{"DIGEST_INVALID"}, want: []error{ErrDigestMismatch}},
		{status: 405, codes: []string{"UNSUPPORTED"}, want: []error{ErrUnsupported}},
		// Some registries answer 400 or 200-class codes with DENIED in the body.
		{status: 400, codes: []string{"DENIED"}, want: []error{ErrDenied}},
		{status: 403, codes: []string{"TOOMANYREQUESTS"}, want: []error{ErrTooManyRequests, ErrDenied}},
		{status: 400, codes: []string{"SOMETHING_NEW"}},
	}
	for _, tt := range tests {
		e := &ResponseError{Method: "GET", URL: "https://r.example/x", StatusCode: tt.status}
		for _, c := range tt.codes {
			e.Errors = append(e.Errors, ErrorEntry{Code: c})
		}
		wrapped := fmt.Errorf("context: %w", e)
		for _, target := range all {
			want := false
			for _, w := range tt.want {
				want = want || errors.Is(w, target)
			}
			if got := errors.Is(wrapped, target); got != want {
				t.Errorf("status %d codes %v: errors.Is(%v) = %v, want %v", tt.status, tt.codes, target, got, want)
			}
		}
	}
}

func response(method, rawURL string, status int, body io.Reader) *http.Response {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	resp := &http.Response{StatusCode: status, Request: &http.Request{Method: method, URL: u}}
	if body != nil {
		resp.Body = io.NopCloser(body)
	}
	return resp
}

// endless yields an unbounded stream and counts what was read.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.n += len(p)
	return len(p), nil
}

func TestNewResponseError(t *testing.T) {
	long := strings.Repeat("m", 1000)
	tests := []struct {
		name        string
		url         string
		status      int
		body        string
		want        string
		mustNotHave []string
	}{
		{
			name: "distribution body", url: "https://r.example/v2/a/manifests/v1", status: 404,
			body: `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1"}}]}`,
			want: "GET https://r.example/v2/a/manifests/v1: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown",
		},
		{
			name: "detail is dropped", url: "https://r.example/v2/a/blobs/uploads/x", status: 400,
			body:        `{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"bad","detail":"echoed secret-detail"}]}`,
			want:        "GET https://r.example/v2/a/blobs/uploads/x: 400 Bad Request: BLOB_UPLOAD_INVALID: bad",
			mustNotHave: []string{"secret-detail"},
		},
		{
			name: "HTML body is not echoed", url: "https://r.example/v2/", status: 502,
			body:        "<html><body>" + strings.Repeat("<p>gateway secret-html</p>", 2000) + "</body></html>",
			want:        "GET https://r.example/v2/: 502 Bad Gateway",
			mustNotHave: []string{"html", "secret-html"},
		},
		{
			name: "plain text body is not echoed", url: "https://r.example/v2/", status: 401,
			body:        "token=secret-text expired",
			want:        "GET https://r.example/v2/: 401 Unauthorized",
			mustNotHave: []string{"secret-text"},
		},
		{
			name: "JSON over the read limit is not echoed", url: "https://r.example/v2/", status: 400,
			body:        `{"errors":[{"code":"X","message":"` + strings.Repeat("secret-huge ", 2000) + `"}]}`,
			want:        "GET https://r.example/v2/: 400 Bad Request",
			mustNotHave: []string{"secret-huge"},
		},
		{
			name: "long message is truncated", url: "https://r.example/v2/", status: 400,
			body: `{"errors":[{"code":"` + strings.Repeat("C", 100) + `","message":"` + long + `"}]}`,
			want: "GET https://r.example/v2/: 400 Bad Request: " + strings.Repeat("C", 64) + "...: " + long[:512] + "...",
		},
		{
			name: "credentials and query are redacted from the URL", url: "https://user:secret-pw@r.example/v2/a/blobs/uploads/1?_state=secret-state#frag", status: 404,
			want:        "GET https://r.example/v2/a/blobs/uploads/1: 404 Not Found",
			mustNotHave: []string{"secret-pw", "secret-state", "user"},
		},
		{name: "no body", url: "https://r.example/v2/", status: 429, want: "GET https://r.example/v2/: 429 Too Many Requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			got := NewResponseError(response("GET", tt.url, tt.status, body)).Error()
			if got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			for _, s := range tt.mustNotHave {
				if strings.Contains(got, s) {
					t.Errorf("Error() %q contains %q", got, s)
				}
			}
		})
	}
}

func TestNewResponseErrorBoundsReading(t *testing.T) {
	src := &endless{}
	NewResponseError(response("GET", "https://r.example/", 500, src))
	if src.n > 64<<10 {
		t.Errorf("read %d bytes of an endless error body; it must be bounded", src.n)
	}
}

func TestNewResponseErrorWithoutRequest(t *testing.T) {
	e := NewResponseError(&http.Response{StatusCode: 500})
	if e.StatusCode != 500 || e.Method != "" || e.URL != "" {
		t.Errorf("got %+v", e)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://r.example/v2/a", "https://r.example/v2/a"},
		{"https://user:pass@r.example/v2/a", "https://r.example/v2/a"},
		{"https://user@r.example:5000/v2/a", "https://r.example:5000/v2/a"},
		{"https://user:p@ss@r.example/v2/a", "https://r.example/v2/a"},
		{"https://r.example/v2/a?_state=secret&digest=sha256:x", "https://r.example/v2/a"},
		{"https://r.example/token?service=r&scope=a#frag", "https://r.example/token"},
		{"https://r.example/v2/a#frag", "https://r.example/v2/a"},
		{"https://user:pass@r.example", "https://r.example"},
		{"https://user:pass@r.example?x=1", "https://r.example"},
		{"https://r.example/v2/user@path", "https://r.example/v2/user@path"}, // an @ in the path is not userinfo
		{"/v2/a?x=secret", "/v2/a"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
