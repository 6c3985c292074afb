// Package receiver turns registry notifications into the one thing
// ocisync takes from them: "repository R on host H may have changed".
// Nothing in a notification is trusted beyond that; the Artifacts that
// follow R sync as they would at their interval, with their own
// credentials, verifying everything.
package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Change is one repository that may have a new manifest.
type Change struct {
	// Host is the registry host the event names (host[:port]), "" when
	// it names none. It narrows a match, never prevents one: pushers and
	// the cluster often reach one registry under different names.
	Host string
	// Repository is the repository path, such as team/app-config.
	Repository string
	// Tag is the tag pushed, "" for a push by digest.
	Tag string
	// Digest is the manifest's digest when the event gives it.
	Digest string
}

// ErrMalformed wraps every error about a body that is not what the
// format describes: the handler answers it with 400.
var ErrMalformed = errors.New("malformed notification")

// manifestMediaTypes are the target media types of a manifest push; a
// Distribution registry also notifies every blob push, which must not
// trigger anything.
var manifestMediaTypes = map[string]bool{
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
}

// distributionEnvelope is the body a CNCF Distribution registry sends to
// a notifications endpoint (media type
// application/vnd.docker.distribution.events.v1+json or v2+json; the
// fields used here are the same in both).
type distributionEnvelope struct {
	Events *[]distributionEvent `json:"events"`
}

type distributionEvent struct {
	Action string `json:"action"`
	Target struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Repository string `json:"repository"`
		URL        string `json:"url"`
		Tag        string `json:"tag"`
	} `json:"target"`
	Request struct {
		Host string `json:"host"`
	} `json:"request"`
}

// ParseDistribution returns the manifest pushes of a Distribution
// notification envelope, each once. Pulls, deletes, mounts and blob
// pushes are left out; an envelope with none of interest gives none and
// no error.
func ParseDistribution(body []byte) ([]Change, error) {
	var env distributionEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: not a Distribution event envelope: %w", ErrMalformed, err)
	}
	if env.Events == nil {
		return nil, fmt.Errorf("%w: no \"events\" list: not a Distribution event envelope", ErrMalformed)
	}
	var out []Change
	seen := map[Change]bool{}
	for i, ev := range *env.Events {
		if ev.Action != "push" || !isManifest(ev.Target.MediaType, ev.Target.URL) {
			continue
		}
		if ev.Target.Repository == "" {
			return nil, fmt.Errorf("%w: event %d is a push without a target repository", ErrMalformed, i)
		}
		c := Change{Host: hostOf(ev.Request.Host, ev.Target.URL), Repository: ev.Target.Repository, Tag: ev.Target.Tag, Digest: ev.Target.Digest}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// isManifest tells a manifest push from a blob push: by the target's
// media type when it is a manifest's, else by its URL, which names
// /manifests/ or /blobs/.
func isManifest(mediaType, rawURL string) bool {
	if manifestMediaTypes[mediaType] {
		return true
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	return strings.Contains(u.Path, "/manifests/") && !strings.Contains(u.Path, "/blobs/")
}

// hostOf is the host the event names: the request's, else the target
// URL's.
func hostOf(requestHost, rawURL string) string {
	if requestHost != "" {
		return strings.ToLower(requestHost)
	}
	if u, err := url.Parse(rawURL); err == nil {
		return strings.ToLower(u.Host)
	}
	return ""
}
