package receiver

import (
	"encoding/base64"
	"testing"
)

// pubsubBody is a Pub/Sub push request carrying data.
func pubsubBody(data string) string {
	return `{"message":{"attributes":{},"data":"` + base64.StdEncoding.EncodeToString([]byte(data)) + `","messageId":"1","publishTime":"2024-01-01T00:00:00Z"},` +
		`"subscription":"projects/p/subscriptions/ocisync"}`
}

func TestParseGAR(t *testing.T) {
	const img = "europe-west1-docker.pkg.dev/proj/repo/app"
	tagged := `{"action":"INSERT","digest":"` + img + `@sha256:aa","tag":"` + img + `:v1"}`
	checkParse(t, ParseGAR, []parseCase{
		{name: "a tag pushed", body: pubsubBody(tagged),
			want: []Change{{Host: "europe-west1-docker.pkg.dev", Repository: "proj/repo/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "a push by digest", body: pubsubBody(`{"action":"INSERT","digest":"` + img + `@sha256:bb"}`),
			want: []Change{{Host: "europe-west1-docker.pkg.dev", Repository: "proj/repo/app", Digest: "sha256:bb"}}},
		{name: "Container Registry", body: pubsubBody(`{"action":"INSERT","digest":"GCR.io/proj/app@sha256:cc","tag":"gcr.io/proj/app:latest"}`),
			want: []Change{{Host: "gcr.io", Repository: "proj/app", Tag: "latest", Digest: "sha256:cc"}}},
		{name: "a subscription with payload unwrapping", body: tagged,
			want: []Change{{Host: "europe-west1-docker.pkg.dev", Repository: "proj/repo/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "deletes are ignored", body: pubsubBody(`{"action":"DELETE","tag":"` + img + `:v1"}`)},
		{name: "not JSON", body: `message`, malformed: true},
		{name: "neither a message nor an action", body: `{"subscription":"projects/p/subscriptions/s"}`, malformed: true},
		{name: "data not base64", body: `{"message":{"data":"not base64!"}}`, malformed: true},
		{name: "data not JSON", body: pubsubBody(`INSERT`), malformed: true},
		{name: "data without an action", body: pubsubBody(`{"tag":"` + img + `:v1"}`), malformed: true},
		{name: "an INSERT naming no image", body: pubsubBody(`{"action":"INSERT","tag":"app"}`), malformed: true},
	})
}
