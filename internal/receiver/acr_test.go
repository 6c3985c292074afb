package receiver

import "testing"

// eventGridEventJSON is one Event Grid schema event.
func eventGridEventJSON(eventType, data string) string {
	return `{"id":"e1","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/demo","subject":"app:v1",` +
		`"eventType":"` + eventType + `","eventTime":"2024-01-01T00:00:00Z","data":` + data + `,"dataVersion":"1.0","metadataVersion":"1"}`
}

// acrData is the data of a Container Registry event.
func acrData(action, repository, tag string) string {
	return `{"id":"d1","timestamp":"2024-01-01T00:00:00Z","action":"` + action + `","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"size":500,"digest":"sha256:aa","length":500,"repository":"` + repository + `","tag":"` + tag + `"},` +
		`"request":{"id":"r1","host":"Demo.azurecr.io","method":"PUT","useragent":"oras"}}`
}

func TestParseACR(t *testing.T) {
	pushed := eventGridEventJSON("Microsoft.ContainerRegistry.ImagePushed", acrData("push", "team/app", "v1"))
	checkParse(t, ParseACR, []parseCase{
		{name: "an image pushed", body: `[` + pushed + `]`,
			want: []Change{{Host: "demo.azurecr.io", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "a chart pushed; the same push twice is one change", body: `[` + pushed + `,` + pushed + `,` + eventGridEventJSON("Microsoft.ContainerRegistry.ChartPushed", acrData("chart_push", "charts/web", "1.0.0")) + `]`,
			want: []Change{{Host: "demo.azurecr.io", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}, {Host: "demo.azurecr.io", Repository: "charts/web", Tag: "1.0.0", Digest: "sha256:aa"}}},
		{name: "deletes are ignored", body: `[` + eventGridEventJSON("Microsoft.ContainerRegistry.ImageDeleted", acrData("delete", "team/app", "")) + `,` +
			eventGridEventJSON("Microsoft.ContainerRegistry.ChartDeleted", acrData("chart_delete", "charts/web", "")) + `]`},
		{name: "the validation event gives no change", body: `[` + eventGridEventJSON("Microsoft.EventGrid.SubscriptionValidationEvent", `{"validationCode":"c0de","validationUrl":"https://example/validate"}`) + `]`},
		{name: "other events are ignored", body: `[` + eventGridEventJSON("Microsoft.Storage.BlobCreated", `{"url":"x"}`) + `]`},
		{name: "an empty list", body: `[]`},
		{name: "not JSON", body: `eventType`, malformed: true},
		{name: "one event, not a list", body: pushed, malformed: true},
		{name: "null", body: `null`, malformed: true},
		{name: "an event without eventType", body: `[{"data":{}}]`, malformed: true},
		{name: "a push without a repository", body: `[` + eventGridEventJSON("Microsoft.ContainerRegistry.ImagePushed", acrData("push", "", "v1")) + `]`, malformed: true},
		{name: "a push whose data is not an object", body: `[` + eventGridEventJSON("Microsoft.ContainerRegistry.ImagePushed", `"team/app"`) + `]`, malformed: true},
	})
}
