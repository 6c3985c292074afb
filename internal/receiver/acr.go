package receiver

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Event types of Azure Container Registry and of Event Grid itself.
const (
	acrImagePushed          = "Microsoft.ContainerRegistry.ImagePushed"
	acrChartPushed          = "Microsoft.ContainerRegistry.ChartPushed"
	eventGridValidationType = "Microsoft.EventGrid.SubscriptionValidationEvent"
)

// eventGridEvent is one event of the Event Grid schema; Event Grid
// delivers a JSON array of them.
type eventGridEvent struct {
	EventType string          `json:"eventType"`
	Data      json.RawMessage `json:"data"`
}

// acrEventData is the data of a Container Registry event, the same in
// the Event Grid and the CloudEvents schema.
type acrEventData struct {
	Target struct {
		MediaType  string `json:"mediaType"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		Digest     string `json:"digest"`
	} `json:"target"`
	Request struct {
		Host string `json:"host"`
	} `json:"request"`
}

// isACRPush reports whether an event type is a Container Registry push.
func isACRPush(eventType string) bool {
	return eventType == acrImagePushed || eventType == acrChartPushed
}

// addACR adds the change of a Container Registry push's data to s.
func addACR(s *changeSet, data []byte) error {
	var d acrEventData
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("%w: the data of a Container Registry push: %w", ErrMalformed, err)
	}
	if d.Target.Repository == "" {
		return fmt.Errorf("%w: a Container Registry push without a target repository", ErrMalformed)
	}
	s.add(Change{Host: d.Request.Host, Repository: d.Target.Repository, Tag: d.Target.Tag, Digest: d.Target.Digest})
	return nil
}

// parseEventGrid decodes an Event Grid schema body.
func parseEventGrid(body []byte) ([]eventGridEvent, error) {
	var events []eventGridEvent
	if err := json.Unmarshal(body, &events); err != nil {
		return nil, fmt.Errorf("%w: not a list of Event Grid events: %w", ErrMalformed, err)
	}
	if events == nil {
		return nil, fmt.Errorf("%w: null: not a list of Event Grid events", ErrMalformed)
	}
	for i, e := range events {
		if e.EventType == "" {
			return nil, fmt.Errorf("%w: Event Grid event %d has no eventType", ErrMalformed, i)
		}
	}
	return events, nil
}

// ParseACR returns the pushes of an Azure Event Grid delivery (Event
// Grid schema) of Container Registry events: ImagePushed and
// ChartPushed. Deletes, the subscription validation event (which
// acrHandshake answers) and other events give none.
func ParseACR(body []byte) ([]Change, error) {
	events, err := parseEventGrid(body)
	if err != nil {
		return nil, err
	}
	var s changeSet
	for _, e := range events {
		if !isACRPush(e.EventType) {
			continue
		}
		if err := addACR(&s, e.Data); err != nil {
			return nil, err
		}
	}
	return s.list, nil
}

// acrHandshake answers Event Grid's subscription validation: a delivery
// holding a SubscriptionValidationEvent is answered 200 with its
// validation code, which proves to Event Grid that the endpoint wants
// the events.
func acrHandshake(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if r.Method != http.MethodPost {
		return false
	}
	events, err := parseEventGrid(body)
	if err != nil {
		return false // parse says why
	}
	for _, e := range events {
		if e.EventType != eventGridValidationType {
			continue
		}
		var d struct {
			ValidationCode string `json:"validationCode"`
		}
		if json.Unmarshal(e.Data, &d) != nil || d.ValidationCode == "" {
			continue
		}
		answer, err := json.Marshal(struct {
			ValidationResponse string `json:"validationResponse"`
		}{d.ValidationCode})
		if err != nil {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(answer)
		return true
	}
	return false
}
