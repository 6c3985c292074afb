package receiver

import (
	"encoding/json"
	"fmt"
)

// harborPushTypes are the Harbor event types of a push: PUSH_ARTIFACT
// since Harbor 2.0, pushImage before.
var harborPushTypes = map[string]bool{"PUSH_ARTIFACT": true, "pushImage": true}

// harborPayload is the body of a Harbor webhook in its default format.
type harborPayload struct {
	Type      string           `json:"type"`
	EventData *harborEventData `json:"event_data"`
}

// harborEventData is event_data in the default format, and the data of
// Harbor's CloudEvents format.
type harborEventData struct {
	Resources []struct {
		Tag         string `json:"tag"`
		Digest      string `json:"digest"`
		ResourceURL string `json:"resource_url"`
	} `json:"resources"`
	Repository *struct {
		Name         string `json:"name"`
		Namespace    string `json:"namespace"`
		RepoFullName string `json:"repo_full_name"`
	} `json:"repository"`
}

// ParseHarbor returns the pushes of a Harbor webhook body (the default
// payload format), one change per resource pushed. Pulls, deletes, scans,
// quota and replication events give none.
func ParseHarbor(body []byte) ([]Change, error) {
	var p harborPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: not a Harbor webhook payload: %w", ErrMalformed, err)
	}
	if p.Type == "" {
		return nil, fmt.Errorf("%w: no event \"type\": not a Harbor webhook payload", ErrMalformed)
	}
	if !harborPushTypes[p.Type] {
		return nil, nil
	}
	var s changeSet
	if err := p.EventData.addTo(&s); err != nil {
		return nil, err
	}
	return s.list, nil
}

// addTo adds the changes of a push's event data to s.
func (d *harborEventData) addTo(s *changeSet) error {
	if d == nil || d.Repository == nil {
		return fmt.Errorf("%w: a Harbor push without event_data.repository", ErrMalformed)
	}
	repo := d.Repository.RepoFullName
	if repo == "" && d.Repository.Namespace != "" && d.Repository.Name != "" {
		repo = d.Repository.Namespace + "/" + d.Repository.Name
	}
	if repo == "" {
		return fmt.Errorf("%w: a Harbor push without a repository name", ErrMalformed)
	}
	if len(d.Resources) == 0 {
		s.add(Change{Repository: repo})
	}
	for _, r := range d.Resources {
		s.add(Change{Host: hostOfImage(r.ResourceURL, repo), Repository: repo, Tag: r.Tag, Digest: r.Digest})
	}
	return nil
}
