package receiver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// garMessage is what Artifact Registry (and Container Registry) publish
// on the "gcr" topic: the action and the image by digest and by tag,
// each with its host, such as
// europe-docker.pkg.dev/project/repo/image@sha256:….
type garMessage struct {
	Action string `json:"action"`
	Digest string `json:"digest"`
	Tag    string `json:"tag"`
}

// ParseGAR returns the push a Pub/Sub push request from the "gcr" topic
// tells of: an INSERT (an image or a tag added). DELETEs give none. A
// subscription with payload unwrapping, which posts the message's data
// alone, is understood too.
func ParseGAR(body []byte) ([]Change, error) {
	// A push request, its message's data base64-encoded; or, unwrapped,
	// the data alone.
	var push struct {
		Message *struct {
			Data string `json:"data"`
		} `json:"message"`
		garMessage
	}
	if err := json.Unmarshal(body, &push); err != nil {
		return nil, fmt.Errorf("%w: not a Pub/Sub push request: %w", ErrMalformed, err)
	}
	m := push.garMessage
	if push.Message != nil {
		data, err := base64.StdEncoding.DecodeString(push.Message.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: the Pub/Sub message's data is not base64: %w", ErrMalformed, err)
		}
		m = garMessage{}
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%w: the Pub/Sub message is not an Artifact Registry notification: %w", ErrMalformed, err)
		}
	}
	if m.Action == "" {
		return nil, fmt.Errorf("%w: no \"action\": not an Artifact Registry notification", ErrMalformed)
	}
	if m.Action != "INSERT" {
		return nil, nil
	}
	byTag, tagged := splitImage(m.Tag)
	byDigest, digested := splitImage(m.Digest)
	var c Change
	switch {
	case tagged:
		c = Change{Host: byTag.host, Repository: byTag.repository, Tag: byTag.tag, Digest: byDigest.digest}
	case digested:
		c = Change{Host: byDigest.host, Repository: byDigest.repository, Digest: byDigest.digest}
	default:
		return nil, fmt.Errorf("%w: an Artifact Registry INSERT names no image", ErrMalformed)
	}
	var s changeSet
	s.add(c)
	return s.list, nil
}
