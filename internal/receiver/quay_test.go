package receiver

import "testing"

func TestParseQuay(t *testing.T) {
	const repo = `"name":"app","repository":"acme/app","namespace":"acme","docker_url":"quay.io/acme/app","homepage":"https://quay.io/repository/acme/app"`
	checkParse(t, ParseQuay, []parseCase{
		{name: "tags pushed, one change each", body: `{` + repo + `,"updated_tags":["latest","v1","v1"]}`,
			want: []Change{{Host: "quay.io", Repository: "acme/app", Tag: "latest"}, {Host: "quay.io", Repository: "acme/app", Tag: "v1"}}},
		{name: "older Quay: tags as an object", body: `{` + repo + `,"updated_tags":{"v2":"abc","v1":"def"}}`,
			want: []Change{{Host: "quay.io", Repository: "acme/app", Tag: "v1"}, {Host: "quay.io", Repository: "acme/app", Tag: "v2"}}},
		{name: "a push without tags names the repository", body: `{` + repo + `,"updated_tags":[]}`,
			want: []Change{{Host: "quay.io", Repository: "acme/app"}}},
		{name: "a registry with a port", body: `{"repository":"acme/app","docker_url":"Quay.Example:8443/acme/app","updated_tags":["v1"]}`,
			want: []Change{{Host: "quay.example:8443", Repository: "acme/app", Tag: "v1"}}},
		{name: "builds are ignored", body: `{` + repo + `,"build_id":"b1","docker_tags":["latest"],"trigger_kind":"github"}`},
		{name: "vulnerabilities are ignored", body: `{` + repo + `,"tags":["latest"],"vulnerability":{"id":"CVE-1","priority":"High"}}`},
		{name: "mirror syncs are ignored", body: `{` + repo + `,"message":"done"}`},
		{name: "not JSON", body: `<xml/>`, malformed: true},
		{name: "no repository", body: `{"docker_url":"quay.io/acme/app","updated_tags":["v1"]}`, malformed: true},
		{name: "updated_tags neither list nor object", body: `{` + repo + `,"updated_tags":"v1"}`, malformed: true},
	})
}
