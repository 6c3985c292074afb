package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ocisync/ocisync/internal/oci/transport"
)

// maxTagPages bounds pagination so a registry whose Link headers loop
// cannot keep a caller busy forever.
const maxTagPages = 10000

// Tags lists every tag of the repository, following Link pagination.
func (r *Repository) Tags(ctx context.Context) ([]string, error) {
	ctx, cancel := r.withTimeout(r.scopeCtx(ctx, "pull"))
	defer cancel()
	next := r.url("tags", "list")
	var tags []string
	for page := 0; next != ""; page++ {
		if page == maxTagPages {
			return nil, fmt.Errorf("listing tags of %s: more than %d pages; the registry's Link headers may loop", r, maxTagPages)
		}
		var pageTags []string
		var err error
		pageTags, next, err = r.tagPage(ctx, next)
		if err != nil {
			return nil, err
		}
		tags = append(tags, pageTags...)
	}
	return tags, nil
}

func (r *Repository) tagPage(ctx context.Context, rawURL string) ([]string, string, error) {
	resp, err := r.send(ctx, http.MethodGet, rawURL, nil, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("listing tags of %s: %w", r, responseError(resp, nil))
	}
	defer drainClose(resp.Body)
	data, err := io.ReadAll(io.LimitReader(resp.Body, r.client.maxManifest+1))
	if err != nil {
		return nil, "", fmt.Errorf("listing tags of %s: %w", r, err)
	}
	if int64(len(data)) > r.client.maxManifest {
		return nil, "", fmt.Errorf("listing tags of %s: a page is over the %d-byte limit: %w", r, r.client.maxManifest, ErrTooLarge)
	}
	var body struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, "", fmt.Errorf("listing tags of %s: invalid response: %w", r, err)
	}
	next, err := nextLink(resp.Request.URL, resp.Header.Values("Link"))
	if err != nil {
		return nil, "", fmt.Errorf("listing tags of %s: %w", r, err)
	}
	return body.Tags, next, nil
}

// nextLink finds the rel="next" target among Link header values (RFC 8288)
// and resolves it against the request URL. The target must stay on the
// registry's origin: a registry must not be able to send our credentials
// elsewhere through pagination.
func nextLink(base *url.URL, values []string) (string, error) {
	for _, v := range values {
		for _, link := range splitLinks(v) {
			start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
			if start != 0 || end < 0 {
				continue
			}
			target, params := link[1:end], link[end+1:]
			if !hasRelNext(params) {
				continue
			}
			u, err := base.Parse(target)
			if err != nil {
				return "", fmt.Errorf("invalid Link target %q: %w", target, err)
			}
			if !transport.SameOrigin(u, base) {
				return "", fmt.Errorf("the registry's next-page link points to another origin (%s://%s); refusing to follow it", u.Scheme, u.Host)
			}
			return u.String(), nil
		}
	}
	return "", nil
}

// splitLinks splits a Link header value on the commas between links,
// ignoring commas inside <...> and quoted strings.
func splitLinks(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' && depth == 0:
			quoted = !quoted
		case c == '<' && !quoted:
			depth++
		case c == '>' && !quoted && depth > 0:
			depth--
		case c == ',' && depth == 0 && !quoted:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

func hasRelNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(val), `"`)) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}
