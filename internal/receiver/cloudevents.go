package receiver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// harborPushedType is the CloudEvents type of a push in Harbor's
// CloudEvents payload format; its data is the default format's
// event_data.
const harborPushedType = "harbor.artifact.pushed"

// cloudEvent is a CloudEvents 1.0 event in the JSON format (structured
// mode), or one rebuilt from a binary-mode request's headers and body.
type cloudEvent struct {
	SpecVersion string          `json:"specversion"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data"`
	DataBase64  string          `json:"data_base64"`
}

// genericPush is the data of a push event of ocisync's own shape, for
// any sender: an event whose type's last dot-separated word is "push" or
// "pushed" (com.example.registry.image.pushed, dev.ocisync.push).
type genericPush struct {
	Repository string `json:"repository"`
	Host       string `json:"host"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
}

// ParseCloudEvents returns the pushes of a CloudEvents 1.0 HTTP request:
// in binary mode (ce-specversion and ce-type headers, the data in the
// body) or structured mode (application/cloudevents+json, one event, or
// application/cloudevents-batch+json, a list of them; a body is read as
// one or the other by its shape, whatever its content type). It knows
// Azure Container Registry's ImagePushed and ChartPushed, Harbor's
// harbor.artifact.pushed and the generic push shape (see genericPush);
// other events give none.
func ParseCloudEvents(header http.Header, body []byte) ([]Change, error) {
	var events []cloudEvent
	switch trimmed := bytes.TrimSpace(body); {
	case header.Get("ce-specversion") != "":
		events = []cloudEvent{{SpecVersion: header.Get("ce-specversion"), Type: header.Get("ce-type"), Data: body}}
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &events); err != nil {
			return nil, fmt.Errorf("%w: not a batch of CloudEvents: %w", ErrMalformed, err)
		}
	default:
		var e cloudEvent
		if err := json.Unmarshal(trimmed, &e); err != nil {
			return nil, fmt.Errorf("%w: not a CloudEvent: %w", ErrMalformed, err)
		}
		events = []cloudEvent{e}
	}
	var s changeSet
	for i, e := range events {
		if !strings.HasPrefix(e.SpecVersion, "1.") || e.Type == "" {
			return nil, fmt.Errorf("%w: event %d is not a CloudEvent 1.0 (specversion %q, type %q)", ErrMalformed, i, e.SpecVersion, e.Type)
		}
		if err := e.addTo(&s); err != nil {
			return nil, fmt.Errorf("event %d (%s): %w", i, e.Type, err)
		}
	}
	return s.list, nil
}

// addTo adds the change of e, if it is a push of a known type, to s.
func (e cloudEvent) addTo(s *changeSet) error {
	generic := isPushVerb(e.Type[strings.LastIndexByte(e.Type, '.')+1:])
	if !isACRPush(e.Type) && e.Type != harborPushedType && !generic {
		return nil
	}
	data, err := e.data()
	if err != nil {
		return err
	}
	switch {
	case isACRPush(e.Type):
		return addACR(s, data)
	case e.Type == harborPushedType:
		var d harborEventData
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("%w: the data of a Harbor push: %w", ErrMalformed, err)
		}
		return d.addTo(s)
	default:
		var d genericPush
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("%w: the data of a push: %w", ErrMalformed, err)
		}
		if d.Repository == "" {
			return fmt.Errorf("%w: a push whose data has no \"repository\"", ErrMalformed)
		}
		s.add(Change{Host: d.Host, Repository: d.Repository, Tag: d.Tag, Digest: d.Digest})
		return nil
	}
}

// data is e's data as bytes: data_base64 decoded, a JSON string's
// content, or the JSON value itself.
func (e cloudEvent) data() ([]byte, error) {
	if e.DataBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(e.DataBase64)
		if err != nil {
			return nil, fmt.Errorf("%w: data_base64 is not base64: %w", ErrMalformed, err)
		}
		return b, nil
	}
	if len(e.Data) > 0 && e.Data[0] == '"' {
		var str string
		if err := json.Unmarshal(e.Data, &str); err != nil {
			return nil, fmt.Errorf("%w: data: %w", ErrMalformed, err)
		}
		return []byte(str), nil
	}
	if len(e.Data) == 0 {
		return nil, fmt.Errorf("%w: a push without data", ErrMalformed)
	}
	return e.Data, nil
}

// isPushVerb reports whether the last word of an event type says push.
func isPushVerb(word string) bool {
	return strings.EqualFold(word, "push") || strings.EqualFold(word, "pushed")
}

// cloudEventsHandshake answers the CloudEvents webhook abuse protection
// handshake: an OPTIONS request naming its sender in
// WebHook-Request-Origin is granted delivery from that origin at any
// rate. It runs only once the request is authorized.
func cloudEventsHandshake(w http.ResponseWriter, r *http.Request, _ []byte) bool {
	if r.Method != http.MethodOptions {
		return false
	}
	w.Header().Set("Allow", "OPTIONS, POST")
	if origin := r.Header.Get("WebHook-Request-Origin"); origin != "" {
		w.Header().Set("WebHook-Allowed-Origin", origin)
		w.Header().Set("WebHook-Allowed-Rate", "*")
	}
	w.WriteHeader(http.StatusOK)
	return true
}
