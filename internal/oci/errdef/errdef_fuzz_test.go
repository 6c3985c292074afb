package errdef

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzNewResponseError feeds registry error bodies to NewResponseError: it
// never panics, keeps messages and codes short, drops details, and its
// message never carries the request's query string (where secrets live).
func FuzzNewResponseError(f *testing.F) {
	for _, s := range []string{
		`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1"}}]}`,
		`{"errors":[{"code":"TOOMANYREQUESTS","message":"` + strings.Repeat("x", 2000) + `"}]}`,
		`{"errors":null}`, `{"errors":[null,{},{"code":1}]}`, `<html>500</html>`, ``, `null`,
		`{"errors":[{"code":"DENIED","detail":"secret-in-detail"}]}`,
	} {
		f.Add([]byte(s), 404)
		f.Add([]byte(s), 429)
	}
	u, err := url.Parse("https://user:pw@r.example.com/v2/a/blobs/uploads/x?_state=secret-state")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		resp := &http.Response{
			StatusCode: status,
			Body:       io.NopCloser(bytes.NewReader(body)),
			Request:    &http.Request{Method: http.MethodGet, URL: u},
		}
		e := NewResponseError(resp)
		for _, entry := range e.Errors {
			if len(entry.Message) > 512+len("...") || len(entry.Code) > 64+len("...") || entry.Detail != nil {
				t.Fatalf("entry not trimmed: code %d bytes, message %d bytes, detail %v", len(entry.Code), len(entry.Message), entry.Detail)
			}
		}
		msg := e.Error()
		if strings.Contains(msg, "secret-state") || strings.Contains(msg, "pw@") {
			t.Fatalf("the message carries the URL's secrets: %s", msg)
		}
	})
}

// FuzzRedactURL checks that what RedactURL leaves of any URL (registries
// send them in Location headers and token realms) has no query string,
// fragment or user information.
func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{
		"https://user:pw@r.example.com/v2/?token=x#frag", "http://a@b@c/d@e", "https://r.example.com/v2/a/blobs/uploads/x?_state=s",
		"//user:pw@host/path", "//u:pw@h", "user:pw@host", "https://[::1]:5000/v2/", "https://h/p?", "", "://@", "https://a:b@",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := RedactURL(raw)
		if strings.ContainsAny(out, "?#") {
			t.Fatalf("RedactURL(%q) = %q keeps a query or fragment", raw, out)
		}
		if u, err := url.Parse(out); err == nil && u.User != nil {
			t.Fatalf("RedactURL(%q) = %q keeps user information", raw, out)
		}
	})
}
