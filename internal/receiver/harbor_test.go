package receiver

import "testing"

// harborPush is a Harbor webhook of type typ whose resources are res.
func harborPush(typ, res string) string {
	return `{"type":"` + typ + `","occur_at":1700000000,"operator":"ci","event_data":{"resources":[` + res + `],` +
		`"repository":{"date_created":1700000000,"name":"app","namespace":"team","repo_full_name":"team/app","repo_type":"private"}}}`
}

func TestParseHarbor(t *testing.T) {
	v1 := `{"digest":"sha256:aa","tag":"v1","resource_url":"Harbor.Example/team/app:v1"}`
	checkParse(t, ParseHarbor, []parseCase{
		{name: "an artifact pushed", body: harborPush("PUSH_ARTIFACT", v1),
			want: []Change{{Host: "harbor.example", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "the same resource twice is one change; another tag another", body: harborPush("PUSH_ARTIFACT", v1+","+v1+`,{"digest":"sha256:aa","tag":"v2","resource_url":"harbor.example/team/app:v2"}`),
			want: []Change{{Host: "harbor.example", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}, {Host: "harbor.example", Repository: "team/app", Tag: "v2", Digest: "sha256:aa"}}},
		{name: "a push by digest names the digest as its tag", body: harborPush("PUSH_ARTIFACT", `{"digest":"sha256:bb","tag":"sha256:bb","resource_url":"harbor.example:8443/team/app@sha256:bb"}`),
			want: []Change{{Host: "harbor.example:8443", Repository: "team/app", Digest: "sha256:bb"}}},
		{name: "Harbor 1.x pushImage", body: harborPush("pushImage", `{"digest":"sha256:cc","tag":"latest","resource_url":"harbor/team/app:latest"}`),
			want: []Change{{Host: "harbor", Repository: "team/app", Tag: "latest", Digest: "sha256:cc"}}},
		{name: "a resource URL without a host names none", body: harborPush("PUSH_ARTIFACT", `{"tag":"v1","resource_url":"team/app:v1"}`),
			want: []Change{{Repository: "team/app", Tag: "v1"}}},
		{name: "the repository from namespace and name", body: `{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"v1"}],"repository":{"name":"app","namespace":"team"}}}`,
			want: []Change{{Repository: "team/app", Tag: "v1"}}},
		{name: "pulls are ignored", body: harborPush("PULL_ARTIFACT", v1)},
		{name: "deletes are ignored", body: harborPush("DELETE_ARTIFACT", v1)},
		{name: "scans are ignored", body: harborPush("SCANNING_COMPLETED", v1)},
		{name: "quota warnings are ignored", body: `{"type":"QUOTA_WARNING","event_data":{"custom_attributes":{"details":"85%"}}}`},
		{name: "not JSON", body: `type: PUSH_ARTIFACT`, malformed: true},
		{name: "no type", body: `{"event_data":{}}`, malformed: true},
		{name: "a push without event data", body: `{"type":"PUSH_ARTIFACT"}`, malformed: true},
		{name: "a push without a repository name", body: `{"type":"PUSH_ARTIFACT","event_data":{"resources":[],"repository":{"name":""}}}`, malformed: true},
	})
}
