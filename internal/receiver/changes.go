package receiver

import (
	"strings"

	"github.com/ocisync/ocisync/internal/oci/reference"
)

// changeSet collects the changes of one body, each once, in the order
// first seen.
type changeSet struct {
	seen map[Change]bool
	list []Change
}

// add normalises c and adds it unless it is there already.
func (s *changeSet) add(c Change) {
	c = normalize(c)
	if s.seen == nil {
		s.seen = map[Change]bool{}
	}
	if !s.seen[c] {
		s.seen[c] = true
		s.list = append(s.list, c)
	}
}

// dockerHubHosts are the names Docker Hub goes by; reference.Parse stores
// every one as reference.DockerHubRegistry.
var dockerHubHosts = map[string]bool{
	"docker.io":                 true,
	"index.docker.io":           true,
	reference.DockerHubRegistry: true,
}

// normalize makes c name its repository the way reference.Parse names
// the Artifacts' references, so that the two compare equal: the host
// lower-cased, Docker Hub as reference.DockerHubRegistry with official
// images under library/. A "tag" that is a digest (Harbor names a push
// by digest so) is the digest, and no tag: no tag holds a ':'.
func normalize(c Change) Change {
	c.Host = strings.ToLower(c.Host)
	c.Repository = strings.Trim(c.Repository, "/")
	if dockerHubHosts[c.Host] {
		c.Host = reference.DockerHubRegistry
		if !strings.Contains(c.Repository, "/") {
			c.Repository = "library/" + c.Repository
		}
	}
	if strings.Contains(c.Tag, ":") {
		if c.Digest == "" {
			c.Digest = c.Tag
		}
		c.Tag = ""
	}
	return c
}

// image is an image reference that starts with its registry host, such
// as "reg.example:5000/team/app:v1" or "…/team/app@sha256:…", split
// without reference.Parse's rules: the first component is the host
// whether or not it looks like one (a registry named by a single-label
// host is common on a private network), and nothing is validated.
type image struct{ host, repository, tag, digest string }

// splitImage splits s, which may start with a URL scheme; ok is false
// when s names no host and repository.
func splitImage(s string) (img image, ok bool) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s, img.digest = s[:i], s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		s, img.tag = s[:i], s[i+1:]
	}
	img.host, img.repository, ok = strings.Cut(s, "/")
	img.repository = strings.Trim(img.repository, "/")
	if !ok || img.host == "" || img.repository == "" {
		return image{}, false
	}
	return img, true
}

// hostOfImage is the host an image reference of repository, such as a
// Quay docker_url or a Harbor resource_url, starts with; "" unless the
// rest of it is that repository, so that a reference without a host
// does not pass its first path component off as one.
func hostOfImage(s, repository string) string {
	if img, ok := splitImage(s); ok && strings.EqualFold(img.repository, strings.Trim(repository, "/")) {
		return img.host
	}
	return ""
}
