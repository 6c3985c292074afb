package receiver

import (
	"errors"
	"reflect"
	"testing"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func TestParseDistribution(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want []Change
	}{
		{
			name: "a tag pushed",
			body: `{"events":[{"id":"1","action":"push","target":{"mediaType":"` + ociManifest + `","digest":"sha256:aa","repository":"team/app","url":"http://reg.example:5000/v2/team/app/manifests/sha256:aa","tag":"v1"},"request":{"host":"reg.example:5000"}}]}`,
			want: []Change{{Host: "reg.example:5000", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}},
		},
		{
			name: "blob pushes trigger nothing",
			body: `{"events":[{"action":"push","target":{"mediaType":"application/octet-stream","digest":"sha256:bb","repository":"team/app","url":"http://reg.example/v2/team/app/blobs/sha256:bb"}}]}`,
		},
		{
			name: "a layer of a type not a manifest's is told by its blobs URL",
			body: `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.layer.v1.tar","repository":"team/app","url":"http://reg.example/v2/team/app/blobs/sha256:cc"}}]}`,
		},
		{
			name: "a manifest of an unknown media type is known by its URL",
			body: `{"events":[{"action":"push","target":{"mediaType":"application/vnd.example+json","repository":"team/app","url":"http://reg.example/v2/team/app/manifests/v2","tag":"v2"}}]}`,
			want: []Change{{Host: "reg.example", Repository: "team/app", Tag: "v2"}},
		},
		{
			name: "pulls, deletes and mounts are ignored",
			body: `{"events":[
				{"action":"pull","target":{"mediaType":"` + ociManifest + `","repository":"team/app","tag":"v1"}},
				{"action":"delete","target":{"mediaType":"` + ociManifest + `","repository":"team/app","tag":"v1"}},
				{"action":"mount","target":{"mediaType":"` + ociManifest + `","repository":"team/app"}}]}`,
		},
		{
			name: "the same push retried is one change; another tag is another",
			body: `{"events":[
				{"action":"push","target":{"mediaType":"` + ociManifest + `","repository":"team/app","tag":"v1","digest":"sha256:aa"}},
				{"action":"push","target":{"mediaType":"` + ociManifest + `","repository":"team/app","tag":"v1","digest":"sha256:aa"}},
				{"action":"push","target":{"mediaType":"` + ociManifest + `","repository":"team/app","tag":"v2","digest":"sha256:aa"}}]}`,
			want: []Change{{Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}, {Repository: "team/app", Tag: "v2", Digest: "sha256:aa"}},
		},
		{
			name: "the host comes from the target URL when the request names none, lower-cased",
			body: `{"events":[{"action":"push","target":{"mediaType":"` + ociManifest + `","repository":"a","url":"https://Reg.Example/v2/a/manifests/sha256:aa"}}]}`,
			want: []Change{{Host: "reg.example", Repository: "a"}},
		},
		{name: "no events at all", body: `{"events":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDistribution([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParseDistribution: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseDistribution = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseDistributionRefuses(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"not JSON", `events: []`},
		{"JSON, but no events list", `{"event":{}}`},
		{"events not a list", `{"events":{"action":"push"}}`},
		{"a manifest push without a repository", `{"events":[{"action":"push","target":{"mediaType":"` + ociManifest + `","tag":"v1"}}]}`},
		{"empty body", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDistribution([]byte(tc.body))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseDistribution = %+v, %v; want an error wrapping ErrMalformed", got, err)
			}
		})
	}
}
