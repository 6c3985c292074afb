package receiver

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
)

// TestHooks sends each provider's path a notification as its sender
// would, rightly and wrongly authorized.
func TestHooks(t *testing.T) {
	// Docker Hub's callback_url must never be called.
	var callbacks atomic.Int32
	callback := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { callbacks.Add(1) }))
	defer callback.Close()
	dockerHub := strings.Replace(dockerHubPush("acme/app", "v1"), "https://registry.hub.docker.com/u/acme/app/hook/x/", callback.URL, 1)

	githubBody := githubPackageBody("package", "published", "CONTAINER", "acme", "app", githubTagged)
	githubSig := "sha256=" + hex.EncodeToString(sign([]byte(githubBody), testToken))
	githubChanged := strings.Replace(githubBody, `"acme"`, `"acmf"`, 1)

	harbor := harborPush("PUSH_ARTIFACT", `{"digest":"sha256:aa","tag":"v1","resource_url":"harbor.example/team/app:v1"}`)
	quay := `{"repository":"acme/app","namespace":"acme","name":"app","docker_url":"quay.io/acme/app","updated_tags":["v1"]}`
	acr := `[` + eventGridEventJSON("Microsoft.ContainerRegistry.ImagePushed", acrData("push", "team/app", "v1")) + `]`
	validation := `[` + eventGridEventJSON("Microsoft.EventGrid.SubscriptionValidationEvent", `{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net/x"}`) + `]`
	gar := pubsubBody(`{"action":"INSERT","digest":"europe-docker.pkg.dev/p/r/app@sha256:aa","tag":"europe-docker.pkg.dev/p/r/app:v1"}`)
	ce := cloudEventJSON("Microsoft.ContainerRegistry.ImagePushed", acrData("push", "team/app", "v1"))

	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	acrChange := []Change{{Host: "demo.azurecr.io", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}}
	for _, tc := range []struct {
		name       string
		method     string // POST unless set
		target     string
		header     map[string]string
		body       string
		wantCode   int
		wantResult string
		want       []Change // handed to the trigger
	}{
		{name: "harbor, Bearer", target: "/hooks/harbor", header: bearer, body: harbor, wantCode: 202, wantResult: ResultAccepted,
			want: []Change{{Host: "harbor.example", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "harbor, the token alone", target: "/hooks/harbor", header: map[string]string{"Authorization": testToken}, body: harbor, wantCode: 202, wantResult: ResultAccepted,
			want: []Change{{Host: "harbor.example", Repository: "team/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "harbor, a pull", target: "/hooks/harbor", header: bearer, body: harborPush("PULL_ARTIFACT", `{"tag":"v1"}`), wantCode: 200, wantResult: ResultIgnored},
		{name: "harbor, a wrong token", target: "/hooks/harbor", header: map[string]string{"Authorization": "nope"}, body: harbor, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "harbor, no token", target: "/hooks/harbor", body: harbor, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "harbor, the token in the query is not taken", target: "/hooks/harbor?token=" + testToken, body: harbor, wantCode: 401, wantResult: ResultUnauthorized},

		{name: "dockerhub, token in the query", target: "/hooks/dockerhub?token=" + testToken, body: dockerHub, wantCode: 202, wantResult: ResultAccepted,
			want: []Change{{Host: "registry-1.docker.io", Repository: "acme/app", Tag: "v1"}}},
		{name: "dockerhub, a wrong token", target: "/hooks/dockerhub?token=nope", body: dockerHub, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "dockerhub, no token", target: "/hooks/dockerhub", body: dockerHub, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "dockerhub, malformed", target: "/hooks/dockerhub?token=" + testToken, body: `{}`, wantCode: 400, wantResult: ResultMalformed},

		{name: "github, signed", target: "/hooks/github", header: map[string]string{"X-GitHub-Event": "package", signatureHeader: githubSig}, body: githubBody, wantCode: 202, wantResult: ResultAccepted,
			want: []Change{{Host: "ghcr.io", Repository: "acme/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "github, a body changed by one byte", target: "/hooks/github", header: map[string]string{"X-GitHub-Event": "package", signatureHeader: githubSig}, body: githubChanged, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "github, no signature", target: "/hooks/github", header: map[string]string{"X-GitHub-Event": "package"}, body: githubBody, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "github, the token as Bearer is not a signature", target: "/hooks/github", header: map[string]string{"X-GitHub-Event": "package", "Authorization": "Bearer " + testToken}, body: githubBody, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "github, a ping", target: "/hooks/github", header: map[string]string{"X-GitHub-Event": "ping", signatureHeader: "sha256=" + hex.EncodeToString(sign([]byte(`{"zen":"z"}`), testToken))}, body: `{"zen":"z"}`, wantCode: 200, wantResult: ResultIgnored},

		{name: "quay, token in the query", target: "/hooks/quay?token=" + testToken, body: quay, wantCode: 202, wantResult: ResultAccepted,
			want: []Change{{Host: "quay.io", Repository: "acme/app", Tag: "v1"}}},
		{name: "quay, Bearer", target: "/hooks/quay", header: bearer, body: quay, wantCode: 202, wantResult: ResultAccepted,
			want: []Change{{Host: "quay.io", Repository: "acme/app", Tag: "v1"}}},
		{name: "quay, a wrong token", target: "/hooks/quay?token=" + testToken + "x", body: quay, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "quay, no token", target: "/hooks/quay", body: quay, wantCode: 401, wantResult: ResultUnauthorized},

		{name: "acr, Bearer", target: "/hooks/acr", header: bearer, body: acr, wantCode: 202, wantResult: ResultAccepted, want: acrChange},
		{name: "acr, token in the query", target: "/hooks/acr?token=" + testToken, body: acr, wantCode: 202, wantResult: ResultAccepted, want: acrChange},
		{name: "acr, a wrong token", target: "/hooks/acr", header: map[string]string{"Authorization": "Bearer nope"}, body: acr, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "acr, no token", target: "/hooks/acr", body: acr, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "acr, an unauthorized validation", target: "/hooks/acr", body: validation, wantCode: 401, wantResult: ResultUnauthorized},

		{name: "gar, token in the query", target: "/hooks/gar?token=" + testToken, body: gar, wantCode: 202, wantResult: ResultAccepted,
			want: []Change{{Host: "europe-docker.pkg.dev", Repository: "p/r/app", Tag: "v1", Digest: "sha256:aa"}}},
		{name: "gar, a wrong token", target: "/hooks/gar?token=nope", body: gar, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "gar, no token", target: "/hooks/gar", body: gar, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "gar, bad base64", target: "/hooks/gar?token=" + testToken, body: `{"message":{"data":"%%%"}}`, wantCode: 400, wantResult: ResultMalformed},

		{name: "cloudevents, Bearer", target: "/hooks/cloudevents", header: map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/cloudevents+json; charset=utf-8"}, body: ce, wantCode: 202, wantResult: ResultAccepted, want: acrChange},
		{name: "cloudevents, access_token in the query, a batch", target: "/hooks/cloudevents?access_token=" + testToken, header: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, body: `[` + ce + `]`, wantCode: 202, wantResult: ResultAccepted, want: acrChange},
		{name: "cloudevents, a wrong token", target: "/hooks/cloudevents?token=nope", body: ce, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "cloudevents, no token", target: "/hooks/cloudevents", body: ce, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "cloudevents, an unauthorized OPTIONS", method: "OPTIONS", target: "/hooks/cloudevents", header: map[string]string{"WebHook-Request-Origin": "eventgrid.azure.net"}, wantCode: 401, wantResult: ResultUnauthorized},
		{name: "acr serves no OPTIONS", method: "OPTIONS", target: "/hooks/acr?token=" + testToken, wantCode: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			h := NewHandler(testToken, rec.trigger, logr.Discard())
			var results []string
			h.Observe = func(provider, result string) { results = append(results, result) }
			method := tc.method
			if method == "" {
				method = "POST"
			}
			req := httptest.NewRequest(method, tc.target, strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.wantCode {
				t.Errorf("status %d, want %d (%s)", w.Code, tc.wantCode, w.Body.String())
			}
			if !reflect.DeepEqual(rec.changes, tc.want) {
				t.Errorf("the trigger got %+v, want %+v", rec.changes, tc.want)
			}
			if tc.wantResult != "" && (len(results) != 1 || results[0] != tc.wantResult) {
				t.Errorf("observed %v, want [%s]", results, tc.wantResult)
			}
			if w.Header().Get("WebHook-Allowed-Origin") != "" {
				t.Errorf("consent given: WebHook-Allowed-Origin %q", w.Header().Get("WebHook-Allowed-Origin"))
			}
			if strings.Contains(w.Body.String(), testToken) {
				t.Errorf("the answer holds the token: %q", w.Body.String())
			}
		})
	}
	if n := callbacks.Load(); n != 0 {
		t.Errorf("Docker Hub's callback_url was called %d times", n)
	}
}

// TestEventGridValidation: Event Grid's subscription validation is
// answered with its code, and triggers nothing.
func TestEventGridValidation(t *testing.T) {
	const code = "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
	body := `[` + eventGridEventJSON("Microsoft.EventGrid.SubscriptionValidationEvent", `{"validationCode":"`+code+`","validationUrl":"https://rp-eastus2.eventgrid.azure.net/x"}`) + `]`
	rec := &recorder{}
	h := NewHandler(testToken, rec.trigger, logr.Discard())
	var results []string
	h.Observe = func(provider, result string) { results = append(results, provider+"/"+result) }
	req := httptest.NewRequest("POST", "/hooks/acr?token="+testToken, strings.NewReader(body))
	req.Header.Set("aeg-event-type", "SubscriptionValidation")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var answer map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || w.Code != http.StatusOK {
		t.Fatalf("status %d, body %q (%v); want 200 and JSON", w.Code, w.Body.String(), err)
	}
	if !reflect.DeepEqual(answer, map[string]string{"validationResponse": code}) {
		t.Errorf("answered %v, want the validation code", answer)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if len(rec.changes) != 0 || !reflect.DeepEqual(results, []string{"acr/" + ResultHandshake}) {
		t.Errorf("triggered %v, observed %v; want nothing, [acr/handshake]", rec.changes, results)
	}
}

// TestCloudEventsHandshake: the abuse protection handshake, authorized
// by the token in the URL, grants the origin asking.
func TestCloudEventsHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, target, auth, origin string
		wantOrigin, wantRate       string
	}{
		{"the token in the query", "/hooks/cloudevents?token=" + testToken, "", "eventgrid.azure.net", "eventgrid.azure.net", "*"},
		{"Bearer", "/hooks/cloudevents", "Bearer " + testToken, "eventemitter.example.com", "eventemitter.example.com", "*"},
		{"no origin asked for, none granted", "/hooks/cloudevents?token=" + testToken, "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			h := NewHandler(testToken, rec.trigger, logr.Discard())
			var results []string
			h.Observe = func(provider, result string) { results = append(results, provider+"/"+result) }
			req := httptest.NewRequest("OPTIONS", tc.target, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.origin != "" {
				req.Header.Set("WebHook-Request-Origin", tc.origin)
				req.Header.Set("WebHook-Request-Rate", "120")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				t.Errorf("status %d, want 200", w.Code)
			}
			if got := w.Header().Get("WebHook-Allowed-Origin"); got != tc.wantOrigin {
				t.Errorf("WebHook-Allowed-Origin %q, want %q", got, tc.wantOrigin)
			}
			if got := w.Header().Get("WebHook-Allowed-Rate"); got != tc.wantRate {
				t.Errorf("WebHook-Allowed-Rate %q, want %q", got, tc.wantRate)
			}
			if got := w.Header().Get("Allow"); !strings.Contains(got, "POST") {
				t.Errorf("Allow %q, want POST in it", got)
			}
			if len(rec.changes) != 0 || !reflect.DeepEqual(results, []string{"cloudevents/" + ResultHandshake}) {
				t.Errorf("triggered %v, observed %v; want nothing, [cloudevents/handshake]", rec.changes, results)
			}
		})
	}
}
