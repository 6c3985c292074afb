package receiver

import (
	"encoding/json"
	"fmt"

	"github.com/ocisync/ocisync/internal/oci/reference"
)

// dockerHubPayload is the body of a Docker Hub repository webhook. Its
// callback_url, which a receiver may call to report a result, is never
// called: a notification only nudges.
type dockerHubPayload struct {
	PushData *struct {
		Tag string `json:"tag"`
	} `json:"push_data"`
	Repository *struct {
		RepoName  string `json:"repo_name"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"repository"`
}

// ParseDockerHub returns the push a Docker Hub webhook body tells of
// (Docker Hub sends pushes only), on Host reference.DockerHubRegistry
// with official images under library/, as reference.Parse names them.
func ParseDockerHub(body []byte) ([]Change, error) {
	var p dockerHubPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: not a Docker Hub webhook payload: %w", ErrMalformed, err)
	}
	if p.PushData == nil || p.Repository == nil {
		return nil, fmt.Errorf("%w: no \"push_data\" or \"repository\": not a Docker Hub webhook payload", ErrMalformed)
	}
	repo := p.Repository.RepoName
	if repo == "" && p.Repository.Name != "" {
		repo = p.Repository.Name
		if p.Repository.Namespace != "" {
			repo = p.Repository.Namespace + "/" + repo
		}
	}
	if repo == "" {
		return nil, fmt.Errorf("%w: a Docker Hub push without a repository name", ErrMalformed)
	}
	var s changeSet
	s.add(Change{Host: reference.DockerHubRegistry, Repository: repo, Tag: p.PushData.Tag})
	return s.list, nil
}
