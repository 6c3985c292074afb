package receiver

import (
	"encoding/json"
	"fmt"
	"strings"
)

// githubEventHeader names a GitHub delivery's event.
const githubEventHeader = "X-GitHub-Event"

// githubHost is the GitHub Container Registry, the host of a container
// package whose event names none.
const githubHost = "ghcr.io"

// githubPackageEvent is the body of a "package" or "registry_package"
// event; the package is under the key of the event's name.
type githubPackageEvent struct {
	Action          string         `json:"action"`
	Package         *githubPackage `json:"package"`
	RegistryPackage *githubPackage `json:"registry_package"`
}

type githubPackage struct {
	Name        string `json:"name"`
	Namespace   string `json:"namespace"`
	PackageType string `json:"package_type"`
	Owner       struct {
		Login string `json:"login"`
	} `json:"owner"`
	PackageVersion struct {
		Version           string `json:"version"`
		PackageURL        string `json:"package_url"`
		ContainerMetadata struct {
			Tag struct {
				Name   string `json:"name"`
				Digest string `json:"digest"`
			} `json:"tag"`
		} `json:"container_metadata"`
	} `json:"package_version"`
}

// ParseGitHub returns the container push a GitHub delivery of event (the
// X-GitHub-Event header) tells of: a "package" or "registry_package"
// event published or updated for a container package. Pings, other
// events, other actions and other package types give none.
func ParseGitHub(event string, body []byte) ([]Change, error) {
	if event == "" {
		return nil, fmt.Errorf("%w: no %s header: not a GitHub delivery", ErrMalformed, githubEventHeader)
	}
	if event != "package" && event != "registry_package" {
		return nil, nil
	}
	var e githubPackageEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("%w: not a GitHub %s event: %w", ErrMalformed, event, err)
	}
	pkg := e.Package
	if event == "registry_package" {
		pkg = e.RegistryPackage
	}
	if pkg == nil {
		return nil, fmt.Errorf("%w: a GitHub %s event without %q", ErrMalformed, event, event)
	}
	if (e.Action != "published" && e.Action != "updated") || !strings.EqualFold(pkg.PackageType, "container") {
		return nil, nil
	}
	owner := pkg.Owner.Login
	if owner == "" {
		owner = pkg.Namespace
	}
	if owner == "" || pkg.Name == "" {
		return nil, fmt.Errorf("%w: a GitHub container package without an owner or a name", ErrMalformed)
	}
	v := pkg.PackageVersion
	host := githubHost
	// The package URL names the registry (a GitHub Enterprise Server has
	// its own); the registry's "url" field does not reliably.
	if img, ok := splitImage(v.PackageURL); ok && strings.ContainsAny(img.host, ".:") {
		host = img.host
	}
	digest := v.ContainerMetadata.Tag.Digest
	if digest == "" && strings.HasPrefix(v.Version, "sha256:") {
		digest = v.Version
	}
	var s changeSet
	s.add(Change{
		Host:       host,
		Repository: strings.ToLower(owner + "/" + pkg.Name),
		Tag:        v.ContainerMetadata.Tag.Name,
		Digest:     digest,
	})
	return s.list, nil
}
