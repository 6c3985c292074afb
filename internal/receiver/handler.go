package receiver

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/go-logr/logr"
)

// MaxBody is the largest notification body accepted; a larger one is
// answered 413 before it is read further.
const MaxBody = 1 << 20

// Results of a request, the result label of the webhook metric.
const (
	ResultAccepted     = "accepted"     // parsed; its changes were handed on
	ResultIgnored      = "ignored"      // parsed, nothing of interest (a blob push, a pull, a ping)
	ResultHandshake    = "handshake"    // the sender's check of the endpoint, answered (Event Grid validation, CloudEvents OPTIONS)
	ResultUnauthorized = "unauthorized" // wrong or missing token or signature
	ResultMalformed    = "malformed"    // not the format of its path
	ResultTooLarge     = "too_large"    // over MaxBody
	ResultBusy         = "busy"         // the trigger refused it for now (429)
	ResultFailed       = "failed"       // the trigger failed otherwise (500)
)

// ErrBusy is what a Trigger returns when it cannot take more changes for
// now; the sender is answered 429 and retries.
var ErrBusy = errors.New("too many notifications; retry later")

// Trigger hands changes on to whatever syncs the Artifacts that follow
// them and returns, for each change, how many Artifacts it made due. It
// must not block on the syncs themselves.
type Trigger func(ctx context.Context, provider string, changes []Change) ([]int, error)

// provider is one notification format, served at /hooks/<name>.
type provider struct {
	name string
	// authorized checks the request's token or signature; body is the
	// whole body, for signatures over it.
	authorized func(r *http.Request, body []byte, token string) bool
	// parse returns the changes a request tells of; some formats say
	// what the body is in a header.
	parse func(r *http.Request, body []byte) ([]Change, error)
	// handshake, if set, answers a request that is the sender checking
	// the endpoint rather than a notification, and reports whether it
	// did. It runs once the request is authorized, before parse.
	handshake func(w http.ResponseWriter, r *http.Request, body []byte) bool
	// options serves OPTIONS on the path too; only handshake answers it.
	options bool
}

// bodyOnly adapts a parser that needs the body alone.
func bodyOnly(parse func(body []byte) ([]Change, error)) func(*http.Request, []byte) ([]Change, error) {
	return func(_ *http.Request, body []byte) ([]Change, error) { return parse(body) }
}

// notBody adapts a token check that does not read the body.
func notBody(check func(r *http.Request, token string) bool) func(*http.Request, []byte, string) bool {
	return func(r *http.Request, _ []byte, token string) bool { return check(r, token) }
}

// providers are the formats served, with how each is authorized: see
// docs/push-triggers.md.
var providers = []provider{
	{name: "distribution", authorized: notBody(bearerAuthorized), parse: bodyOnly(ParseDistribution)},
	{name: "harbor", authorized: notBody(headerAuthorized), parse: bodyOnly(ParseHarbor)},
	{name: "dockerhub", authorized: notBody(bearerOrQueryAuthorized), parse: bodyOnly(ParseDockerHub)},
	{name: "github", authorized: signatureAuthorized, parse: func(r *http.Request, body []byte) ([]Change, error) {
		return ParseGitHub(r.Header.Get(githubEventHeader), body)
	}},
	{name: "quay", authorized: notBody(bearerOrQueryAuthorized), parse: bodyOnly(ParseQuay)},
	{name: "acr", authorized: notBody(bearerOrQueryAuthorized), parse: bodyOnly(ParseACR), handshake: acrHandshake},
	{name: "gar", authorized: notBody(bearerOrQueryAuthorized), parse: bodyOnly(ParseGAR)},
	{name: "cloudevents", authorized: notBody(bearerOrQueryAuthorized), parse: func(r *http.Request, body []byte) ([]Change, error) {
		return ParseCloudEvents(r.Header, body)
	}, handshake: cloudEventsHandshake, options: true},
}

// Handler serves every provider's path. Token is the shared secret;
// Observe, if set, is called once per request with the provider and the
// result (for a metric).
type Handler struct {
	Token   string
	Trigger Trigger
	Log     logr.Logger
	Observe func(provider, result string)
	mux     *http.ServeMux
}

// NewHandler returns a Handler for token and trigger.
func NewHandler(token string, trigger Trigger, log logr.Logger) *Handler {
	h := &Handler{Token: token, Trigger: trigger, Log: log, mux: http.NewServeMux()}
	for _, p := range providers {
		serve := func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, p) }
		h.mux.HandleFunc("POST /hooks/"+p.name, serve)
		if p.options {
			h.mux.HandleFunc("OPTIONS /hooks/"+p.name, serve)
		}
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, p provider) {
	result := ResultMalformed
	defer func() {
		if h.Observe != nil {
			h.Observe(p.name, result)
		}
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			result = ResultTooLarge
			http.Error(w, "notification body over 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the notification body failed", http.StatusBadRequest)
		return
	}
	// Authorized before parsed: nothing of an unauthorized body is read
	// for meaning, nor logged.
	if !p.authorized(r, body, h.Token) {
		result = ResultUnauthorized
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if p.handshake != nil && p.handshake(w, r, body) {
		result = ResultHandshake
		return
	}
	if r.Method != http.MethodPost {
		// An OPTIONS no handshake answered.
		result = ResultIgnored
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "only POST notifications are served here", http.StatusMethodNotAllowed)
		return
	}
	changes, err := p.parse(r, body)
	if err != nil {
		h.Log.Info("refused a malformed notification", "provider", p.name, "error", err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(changes) == 0 {
		result = ResultIgnored
		w.WriteHeader(http.StatusOK)
		return
	}
	counts, err := h.Trigger(r.Context(), p.name, changes)
	if errors.Is(err, ErrBusy) {
		result = ResultBusy
		w.Header().Set("Retry-After", "1")
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	}
	if err != nil {
		result = ResultFailed
		h.Log.Error(err, "handing on a notification", "provider", p.name)
		http.Error(w, "the notification could not be handed on", http.StatusInternalServerError)
		return
	}
	result = ResultAccepted
	for i, c := range changes {
		kv := []any{"provider", p.name, "host", c.Host, "repository", c.Repository, "tag", c.Tag}
		// A trigger that coalesces says later how many it triggered.
		if i < len(counts) {
			kv = append(kv, "artifacts", counts[i])
		}
		h.Log.Info("notification accepted", kv...)
	}
	w.WriteHeader(http.StatusAccepted)
}
