package receiver

import (
	"encoding/json"
	"fmt"
	"slices"
)

// quayPayload is the body of a Quay repository notification sent by
// webhook. Only the "Push to Repository" event has updated_tags: a list
// of tags, or in older Quay versions an object keyed by tag.
type quayPayload struct {
	Repository  string          `json:"repository"`
	Namespace   string          `json:"namespace"`
	Name        string          `json:"name"`
	DockerURL   string          `json:"docker_url"`
	UpdatedTags json.RawMessage `json:"updated_tags"`
}

// ParseQuay returns the pushes of a Quay repository notification, one
// change per updated tag. Build, mirror and vulnerability notifications
// give none.
func ParseQuay(body []byte) ([]Change, error) {
	var p quayPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: not a Quay notification: %w", ErrMalformed, err)
	}
	repo := p.Repository
	if repo == "" && p.Namespace != "" && p.Name != "" {
		repo = p.Namespace + "/" + p.Name
	}
	if repo == "" {
		return nil, fmt.Errorf("%w: no \"repository\": not a Quay repository notification", ErrMalformed)
	}
	if len(p.UpdatedTags) == 0 || string(p.UpdatedTags) == "null" {
		return nil, nil
	}
	var tags []string
	if err := json.Unmarshal(p.UpdatedTags, &tags); err != nil {
		var byTag map[string]json.RawMessage
		if json.Unmarshal(p.UpdatedTags, &byTag) != nil {
			return nil, fmt.Errorf("%w: Quay's \"updated_tags\" is neither a list nor an object of tags", ErrMalformed)
		}
		for tag := range byTag {
			tags = append(tags, tag)
		}
		slices.Sort(tags)
	}
	host := hostOfImage(p.DockerURL, repo)
	var s changeSet
	if len(tags) == 0 {
		s.add(Change{Host: host, Repository: repo})
	}
	for _, tag := range tags {
		s.add(Change{Host: host, Repository: repo, Tag: tag})
	}
	return s.list, nil
}
