package receiver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
)

const testToken = "t0ken-for-tests"

// recorder is a Trigger that records what it was handed.
type recorder struct {
	mu      sync.Mutex
	changes []Change
	err     error
}

func (r *recorder) trigger(_ context.Context, provider string, changes []Change) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.changes = append(r.changes, changes...)
	counts := make([]int, len(changes))
	for i := range counts {
		counts[i] = 1
	}
	return counts, nil
}

const pushBody = `{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"team/app","tag":"v1","digest":"sha256:aa"},"request":{"host":"reg:5000"}}]}`

func TestHandler(t *testing.T) {
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		auth       string
		body       string
		triggerErr error
		wantCode   int
		wantResult string
		wantTrig   int // changes handed to the trigger
	}{
		{"a push", "POST", "/hooks/distribution", "Bearer " + testToken, pushBody, nil, http.StatusAccepted, ResultAccepted, 1},
		{"a wrong token", "POST", "/hooks/distribution", "Bearer nope", pushBody, nil, http.StatusUnauthorized, ResultUnauthorized, 0},
		{"no token", "POST", "/hooks/distribution", "", pushBody, nil, http.StatusUnauthorized, ResultUnauthorized, 0},
		{"a malformed body", "POST", "/hooks/distribution", "Bearer " + testToken, `{"events":`, nil, http.StatusBadRequest, ResultMalformed, 0},
		{"an unauthorized malformed body is unauthorized first", "POST", "/hooks/distribution", "", `{"events":`, nil, http.StatusUnauthorized, ResultUnauthorized, 0},
		{"a body over 1 MiB", "POST", "/hooks/distribution", "Bearer " + testToken, `{"events":[` + strings.Repeat(" ", MaxBody) + `]}`, nil, http.StatusRequestEntityTooLarge, ResultTooLarge, 0},
		{"nothing of interest", "POST", "/hooks/distribution", "Bearer " + testToken, `{"events":[{"action":"pull","target":{"repository":"team/app"}}]}`, nil, http.StatusOK, ResultIgnored, 0},
		{"the trigger is busy", "POST", "/hooks/distribution", "Bearer " + testToken, pushBody, ErrBusy, http.StatusTooManyRequests, ResultBusy, 0},
		{"the trigger fails", "POST", "/hooks/distribution", "Bearer " + testToken, pushBody, errors.New("boom"), http.StatusInternalServerError, ResultFailed, 0},
		{"GET is not served", "GET", "/hooks/distribution", "Bearer " + testToken, "", nil, http.StatusMethodNotAllowed, "", 0},
		{"an unknown provider", "POST", "/hooks/nope", "Bearer " + testToken, pushBody, nil, http.StatusNotFound, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{err: tc.triggerErr}
			h := NewHandler(testToken, rec.trigger, logr.Discard())
			var results []string
			h.Observe = func(provider, result string) { results = append(results, provider+"/"+result) }
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.wantCode {
				t.Errorf("status %d, want %d (%s)", w.Code, tc.wantCode, w.Body.String())
			}
			if len(rec.changes) != tc.wantTrig {
				t.Errorf("the trigger got %v, want %d changes", rec.changes, tc.wantTrig)
			}
			if tc.wantResult == "" {
				if len(results) != 0 {
					t.Errorf("observed %v for a request no provider serves", results)
				}
				return
			}
			if len(results) != 1 || results[0] != "distribution/"+tc.wantResult {
				t.Errorf("observed %v, want [distribution/%s]", results, tc.wantResult)
			}
			if strings.Contains(w.Body.String(), testToken) {
				t.Errorf("the answer holds the token: %q", w.Body.String())
			}
		})
	}
}
