package receiver

import "testing"

// dockerHubPush is a Docker Hub webhook body for a push of tag to
// repoName.
func dockerHubPush(repoName, tag string) string {
	return `{"callback_url":"https://registry.hub.docker.com/u/acme/app/hook/x/","push_data":{"pushed_at":1700000000,"pusher":"ci","tag":"` + tag + `"},` +
		`"repository":{"repo_name":"` + repoName + `","namespace":"acme","name":"app","is_private":true,"status":"Active"}}`
}

func TestParseDockerHub(t *testing.T) {
	checkParse(t, ParseDockerHub, []parseCase{
		{name: "a tag pushed", body: dockerHubPush("acme/app", "v1"),
			want: []Change{{Host: "registry-1.docker.io", Repository: "acme/app", Tag: "v1"}}},
		{name: "an official image is under library/", body: dockerHubPush("nginx", "1.27"),
			want: []Change{{Host: "registry-1.docker.io", Repository: "library/nginx", Tag: "1.27"}}},
		{name: "the repository from namespace and name", body: `{"push_data":{"tag":"latest"},"repository":{"namespace":"acme","name":"app"}}`,
			want: []Change{{Host: "registry-1.docker.io", Repository: "acme/app", Tag: "latest"}}},
		{name: "not JSON", body: `push`, malformed: true},
		{name: "no push_data", body: `{"repository":{"repo_name":"acme/app"}}`, malformed: true},
		{name: "no repository", body: `{"push_data":{"tag":"v1"}}`, malformed: true},
		{name: "no repository name", body: `{"push_data":{"tag":"v1"},"repository":{}}`, malformed: true},
	})
}
