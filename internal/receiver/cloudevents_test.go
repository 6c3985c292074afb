package receiver

import (
	"encoding/base64"
	"errors"
	"net/http"
	"reflect"
	"testing"
)

// cloudEventJSON is a structured-mode event of type typ with data.
func cloudEventJSON(typ, data string) string {
	return `{"specversion":"1.0","id":"1","source":"/registries/demo","type":"` + typ + `","datacontenttype":"application/json","data":` + data + `}`
}

func TestParseCloudEvents(t *testing.T) {
	acr := cloudEventJSON("Microsoft.ContainerRegistry.ImagePushed", acrData("push", "team/app", "v1"))
	acrChange := Change{Host: "demo.azurecr.io", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}
	harbor := cloudEventJSON("harbor.artifact.pushed", `{"resources":[{"digest":"sha256:bb","tag":"v2","resource_url":"harbor.example/team/app:v2"}],"repository":{"name":"app","namespace":"team","repo_full_name":"team/app"}}`)
	harborChange := Change{Host: "harbor.example", Repository: "team/app", Tag: "v2", Digest: "sha256:bb"}
	generic := `{"repository":"team/app","host":"Reg.Example","tag":"v3","digest":"sha256:cc"}`
	genericChange := Change{Host: "reg.example", Repository: "team/app", Tag: "v3", Digest: "sha256:cc"}
	binary := func(typ string) http.Header {
		return http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {typ}, "Ce-Id": {"1"}, "Ce-Source": {"/ci"}, "Content-Type": {"application/json"}}
	}
	for _, tc := range []struct {
		name      string
		header    http.Header
		body      string
		want      []Change
		malformed bool
	}{
		{name: "ACR's push, structured", body: acr, want: []Change{acrChange}},
		{name: "Harbor's push", body: harbor, want: []Change{harborChange}},
		{name: "the generic shape", body: cloudEventJSON("com.example.image.pushed", generic), want: []Change{genericChange}},
		{name: "the generic shape with the verb push", body: cloudEventJSON("dev.ocisync.Push", `{"repository":"team/app"}`), want: []Change{{Repository: "team/app"}}},
		{name: "the generic shape on Docker Hub", body: cloudEventJSON("ci.push", `{"repository":"nginx","host":"docker.io","tag":"1"}`),
			want: []Change{{Host: "registry-1.docker.io", Repository: "library/nginx", Tag: "1"}}},
		{name: "a batch; the same push twice is one change", body: `[` + acr + `,` + harbor + `,` + acr + `]`, want: []Change{acrChange, harborChange}},
		{name: "binary mode", header: binary("com.example.image.pushed"), body: generic, want: []Change{genericChange}},
		{name: "data_base64", body: `{"specversion":"1.0","type":"ci.pushed","data_base64":"` + base64.StdEncoding.EncodeToString([]byte(generic)) + `"}`, want: []Change{genericChange}},
		{name: "data as a JSON string", body: cloudEventJSON("ci.pushed", `"{\"repository\":\"team/app\"}"`), want: []Change{{Repository: "team/app"}}},
		{name: "ACR's deletes are ignored", body: cloudEventJSON("Microsoft.ContainerRegistry.ImageDeleted", acrData("delete", "team/app", ""))},
		{name: "Harbor's pulls are ignored", body: cloudEventJSON("harbor.artifact.pulled", `{"resources":[],"repository":{"repo_full_name":"team/app"}}`)},
		{name: "other types are ignored", body: cloudEventJSON("com.example.build.finished", `{"anything":1}`)},
		{name: "other types are ignored in binary mode", header: binary("com.example.deleted"), body: `not even JSON`},
		{name: "an empty batch", body: `[]`},
		{name: "not JSON", body: `specversion: 1.0`, malformed: true},
		{name: "empty", body: ``, malformed: true},
		{name: "no specversion", body: `{"type":"ci.pushed","data":` + generic + `}`, malformed: true},
		{name: "specversion 0.3", body: `{"specversion":"0.3","type":"ci.pushed","data":` + generic + `}`, malformed: true},
		{name: "no type", body: `{"specversion":"1.0","data":` + generic + `}`, malformed: true},
		{name: "binary mode without ce-type", header: http.Header{"Ce-Specversion": {"1.0"}}, body: generic, malformed: true},
		{name: "a generic push without a repository", body: cloudEventJSON("ci.pushed", `{"tag":"v1"}`), malformed: true},
		{name: "a push without data", body: `{"specversion":"1.0","type":"ci.pushed"}`, malformed: true},
		{name: "data_base64 not base64", body: `{"specversion":"1.0","type":"ci.pushed","data_base64":"!"}`, malformed: true},
		{name: "an ACR push without a repository", body: cloudEventJSON("Microsoft.ContainerRegistry.ImagePushed", acrData("push", "", "v1")), malformed: true},
		{name: "a batch with one bad event", body: `[` + acr + `,{"type":"ci.pushed"}]`, malformed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCloudEvents(tc.header, []byte(tc.body))
			if tc.malformed {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("got %+v, %v; want an error wrapping ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
