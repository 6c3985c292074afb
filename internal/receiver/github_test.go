package receiver

import "testing"

// githubPackageBody is a package or registry_package event body (key names
// which) for the package name owned by owner.
func githubPackageBody(key, action, packageType, owner, name, version string) string {
	return `{"action":"` + action + `","` + key + `":{"id":1,"name":"` + name + `","namespace":"` + owner + `","package_type":"` + packageType + `",` +
		`"owner":{"login":"` + owner + `"},"package_version":` + version + `,` +
		`"registry":{"name":"GitHub CONTAINER registry","type":"CONTAINER","url":"https://CONTAINER.pkg.github.com/` + owner + `"}},` +
		`"repository":{"full_name":"` + owner + `/src"},"sender":{"login":"ci"}}`
}

const githubTagged = `{"version":"sha256:aa","name":"sha256:aa","package_url":"ghcr.io/acme/app:v1",` +
	`"container_metadata":{"tag":{"name":"v1","digest":"sha256:aa"},"manifest":{"digest":"sha256:aa"}}}`

func TestParseGitHub(t *testing.T) {
	for _, event := range []string{"package", "registry_package"} {
		t.Run(event, func(t *testing.T) {
			checkParse(t, func(body []byte) ([]Change, error) { return ParseGitHub(event, body) }, []parseCase{
				{name: "a container published", body: githubPackageBody(event, "published", "CONTAINER", "Acme", "App", githubTagged),
					want: []Change{{Host: "ghcr.io", Repository: "acme/app", Tag: "v1", Digest: "sha256:aa"}}},
				{name: "a container updated, lower-case type", body: githubPackageBody(event, "updated", "container", "acme", "app", githubTagged),
					want: []Change{{Host: "ghcr.io", Repository: "acme/app", Tag: "v1", Digest: "sha256:aa"}}},
				{name: "an untagged version names its digest", body: githubPackageBody(event, "published", "CONTAINER", "acme", "app", `{"version":"sha256:bb","package_url":"ghcr.io/acme/app:"}`),
					want: []Change{{Host: "ghcr.io", Repository: "acme/app", Digest: "sha256:bb"}}},
				{name: "a nested package name", body: githubPackageBody(event, "published", "CONTAINER", "acme", "tools/CLI", `{"container_metadata":{"tag":{"name":"v2"}}}`),
					want: []Change{{Host: "ghcr.io", Repository: "acme/tools/cli", Tag: "v2"}}},
				{name: "GitHub Enterprise Server names its registry in the package URL", body: githubPackageBody(event, "published", "CONTAINER", "acme", "app", `{"package_url":"containers.GHE.example/acme/app:v3","container_metadata":{"tag":{"name":"v3"}}}`),
					want: []Change{{Host: "containers.ghe.example", Repository: "acme/app", Tag: "v3"}}},
				{name: "other package types are ignored", body: githubPackageBody(event, "published", "npm", "acme", "app", `{"version":"1.0.0"}`)},
				{name: "other actions are ignored", body: githubPackageBody(event, "deleted", "CONTAINER", "acme", "app", githubTagged)},
				{name: "not JSON", body: `action=published`, malformed: true},
				{name: "no package", body: `{"action":"published"}`, malformed: true},
				{name: "a container without a name", body: githubPackageBody(event, "published", "CONTAINER", "acme", "", githubTagged), malformed: true},
			})
		})
	}
	t.Run("other events", func(t *testing.T) {
		for _, event := range []string{"ping", "push", "release"} {
			if got, err := ParseGitHub(event, []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)); got != nil || err != nil {
				t.Errorf("ParseGitHub(%q) = %+v, %v; want nothing", event, got, err)
			}
		}
	})
	t.Run("no event header", func(t *testing.T) {
		checkParse(t, func(body []byte) ([]Change, error) { return ParseGitHub("", body) }, []parseCase{
			{name: "a package body", body: githubPackageBody("package", "published", "CONTAINER", "acme", "app", githubTagged), malformed: true},
		})
	})
}
