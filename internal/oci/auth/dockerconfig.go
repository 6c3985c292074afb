package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
)

// maxDockerConfigBytes bounds LoadDockerConfigFile. Kubernetes Secrets are
// at most 1 MiB; a config file many times that is a mistake, not a config.
const maxDockerConfigBytes = 4 << 20

// Store holds registry credentials parsed from Docker config JSON. The zero
// value is an empty store. It is safe for concurrent use.
//
// Entries keep their order: the config's own order, then the entries of
// each merged store in Merge order. For a host, the first entry whose key
// names exactly that host wins; wildcard keys (kubelet style, e.g.
// "*.azurecr.io") are consulted only when no exact key matches.
type Store struct {
	mu      sync.RWMutex
	entries []storeEntry
}

type storeEntry struct {
	host string // canonical host[:port], possibly with glob characters
	glob bool
	cred Credential
}

// knownConfigKeys are top-level keys of a Docker CLI config.json. A
// document without "auths" but with one of these is a config.json that
// simply holds no inline credentials, not the legacy .dockercfg form.
var knownConfigKeys = map[string]bool{
	"auths": true, "credsStore": true, "credHelpers": true, "HttpHeaders": true,
	"psFormat": true, "imagesFormat": true, "pluginsFormat": true, "detachKeys": true,
	"experimental": true, "stackOrchestrator": true, "currentContext": true,
	"cliPluginsExtraDirs": true, "plugins": true, "aliases": true, "features": true,
	"proxies": true, "kubernetes": true,
}

// dockerAuthEntry is one value of the "auths" map.
type dockerAuthEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// ParseDockerConfig parses Docker config JSON in either form Kubernetes
// pull secrets use:
//
//   - kubernetes.io/dockerconfigjson (".dockerconfigjson", and Docker's
//     config.json): {"auths": {"<registry>": {...}}};
//   - kubernetes.io/dockercfg (".dockercfg"): the auths map itself at the
//     top level.
//
// Each entry may hold "auth" (base64 of "username:password", which takes
// precedence over "username"/"password", as in Docker), "identitytoken"
// and "registrytoken". Registry keys may be "host[:port]", a URL such as
// "https://host/v1/" (scheme and path are ignored), or a kubelet-style
// wildcard like "*.example.com". Entries without any credential are
// skipped. credsStore and credHelpers are not supported (an operator
// cannot run credential helpers) and are ignored.
//
// Errors name the registry key and the problem but never echo values.
func ParseDockerConfig(data []byte) (*Store, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("parsing docker config: the document is empty; expected {\"auths\": {...}}")
	}
	top, err := decodeOrderedObject(data)
	if err != nil {
		return nil, fmt.Errorf("parsing docker config: %w", err)
	}

	auths, found := top.get("auths")
	switch {
	case found:
		if string(bytes.TrimSpace(auths)) == "null" {
			return &Store{}, nil
		}
		if top, err = decodeOrderedObject(auths); err != nil {
			return nil, fmt.Errorf("parsing docker config: \"auths\": %w", err)
		}
	case top.hasAny(knownConfigKeys):
		// A config.json without inline credentials.
		return &Store{}, nil
	}
	// top is now the registry → entry map of either form.

	s := &Store{}
	for _, kv := range top {
		e, err := decodeAuthEntry(kv.key, kv.value)
		if err != nil {
			return nil, fmt.Errorf("parsing docker config: %w", err)
		}
		if e == nil || e.cred.IsEmpty() {
			continue
		}
		s.entries = append(s.entries, *e)
	}
	return s, nil
}

// LoadDockerConfigFile reads and parses a Docker config file (such as
// ~/.docker/config.json) with ParseDockerConfig.
func LoadDockerConfigFile(file string) (*Store, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading docker config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDockerConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading docker config %s: %w", file, err)
	}
	if len(data) > maxDockerConfigBytes {
		return nil, fmt.Errorf("reading docker config %s: larger than %d bytes; is this the right file?", file, maxDockerConfigBytes)
	}
	s, err := ParseDockerConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

// decodeAuthEntry turns one "auths" entry into a store entry. A JSON null
// value yields nil.
func decodeAuthEntry(key string, raw json.RawMessage) (*storeEntry, error) {
	trimmed := bytes.TrimSpace(raw)
	if string(trimmed) == "null" {
		return nil, nil
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("registry %q: the value is not a JSON object; expected {\"auths\": {\"<registry>\": {\"auth\": ...}}} or, in the .dockercfg form, {\"<registry>\": {\"auth\": ...}}", key)
	}
	host, glob, err := normalizeKey(key)
	if err != nil {
		return nil, err
	}
	var e dockerAuthEntry
	if err := json.Unmarshal(trimmed, &e); err != nil {
		return nil, fmt.Errorf("registry %q: %w", key, sanitizeJSONError(err))
	}
	cred := Credential{
		Username:      e.Username,
		Password:      e.Password,
		IdentityToken: e.IdentityToken,
		RegistryToken: e.RegistryToken,
	}
	if e.Auth != "" {
		user, pass, err := decodeAuthField(e.Auth)
		if err != nil {
			return nil, fmt.Errorf("registry %q: field \"auth\" %w", key, err)
		}
		cred.Username, cred.Password = user, pass
	}
	return &storeEntry{host: host, glob: glob, cred: cred}, nil
}

// decodeAuthField decodes base64("username:password"). The error text never
// contains the value or any part of it.
func decodeAuthField(v string) (user, pass string, err error) {
	v = strings.TrimSpace(v)
	dec, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		// Some tools drop the padding.
		var rawErr error
		if dec, rawErr = base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "=")); rawErr != nil {
			return "", "", errors.New("is not valid base64; it must be base64 of \"username:password\" (for example the output of: printf '%s:%s' USER PASS | base64 -w0)")
		}
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	if !ok {
		return "", "", errors.New("decodes to a value without ':'; it must be base64 of \"username:password\"")
	}
	return user, pass, nil
}

// normalizeKey turns a config key into a canonical host[:port]: scheme and
// path are dropped ("https://index.docker.io/v1/" → "docker.io").
func normalizeKey(key string) (host string, glob bool, err error) {
	k := strings.TrimSpace(key)
	lower := strings.ToLower(k)
	for _, prefix := range []string{"https://", "http://"} {
		if strings.HasPrefix(lower, prefix) {
			k = k[len(prefix):]
			break
		}
	}
	if i := strings.IndexByte(k, '/'); i >= 0 {
		k = k[:i]
	}
	if k == "" {
		return "", false, fmt.Errorf("registry key %q names no host; use \"registry.example.com\" or \"https://registry.example.com\"", key)
	}
	host = canonicalHost(k)
	glob = strings.ContainsAny(host, "*?[")
	if glob {
		// Validate the pattern once so that Lookup never meets a bad one.
		if _, err := path.Match(host, ""); err != nil {
			return "", false, fmt.Errorf("registry key %q is not a valid wildcard pattern", key)
		}
	}
	return host, glob, nil
}

// dockerHubHosts are the names Docker Hub goes by: image references say
// docker.io, requests go to registry-1.docker.io, and the Docker CLI stores
// credentials under https://index.docker.io/v1/.
var dockerHubHosts = map[string]bool{
	"docker.io":            true,
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// canonicalHost lowercases host and folds the Docker Hub aliases (with or
// without the default https port) into "docker.io".
func canonicalHost(host string) string {
	h := strings.ToLower(strings.TrimSpace(host))
	if dockerHubHosts[strings.TrimSuffix(h, ":443")] {
		return "docker.io"
	}
	return h
}

// Merge appends other's entries after s's. Entries already in s win for a
// host: this is how kubelet treats a pod's imagePullSecrets (the first
// secret that has credentials for a registry is used), so merge secrets in
// the order they are listed. A nil other is a no-op.
func (s *Store) Merge(other *Store) {
	if other == nil {
		return
	}
	other.mu.RLock()
	add := append([]storeEntry(nil), other.entries...)
	other.mu.RUnlock()
	s.mu.Lock()
	s.entries = append(s.entries, add...)
	s.mu.Unlock()
}

// Lookup returns the credential for a registry host (host[:port], as in
// request URLs), or the empty credential when there is none. An exact key
// wins over a wildcard key; among equals the first entry wins. Any
// Docker Hub alias finds the credentials stored under any other.
func (s *Store) Lookup(host string) Credential {
	h := canonicalHost(host)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.entries {
		if !e.glob && e.host == h {
			return e.cred
		}
	}
	for _, e := range s.entries {
		if e.glob && globMatchHost(e.host, h) {
			return e.cred
		}
	}
	return Credential{}
}

// Registries lists the (canonical) registry keys the store has credentials
// for, sorted and without duplicates: for diagnostics, as it holds no
// secrets.
func (s *Store) Registries() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for _, e := range s.entries {
		if !seen[e.host] {
			seen[e.host] = true
			out = append(out, e.host)
		}
	}
	sort.Strings(out)
	return out
}

// CredentialFunc returns a CredentialFunc backed by s. Later Merges are
// visible to it.
func (s *Store) CredentialFunc() CredentialFunc {
	return func(_ context.Context, host string) (Credential, error) {
		return s.Lookup(host), nil
	}
}

// globMatchHost matches a kubelet-style wildcard key against a host: the
// ports must be equal and each dot-separated label must match its pattern
// label (so "*.example.com" matches "a.example.com" but not
// "a.b.example.com" or "example.com").
func globMatchHost(pattern, host string) bool {
	pHost, pPort := splitHostPort(pattern)
	hHost, hPort := splitHostPort(host)
	if pPort != hPort {
		return false
	}
	pl := strings.Split(pHost, ".")
	hl := strings.Split(hHost, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, err := path.Match(pl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

// splitHostPort splits "host:port"; it does not need to handle IPv6
// literals correctly because wildcards never apply to them.
func splitHostPort(hp string) (host, port string) {
	if strings.HasPrefix(hp, "[") {
		return hp, ""
	}
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		return hp[:i], hp[i+1:]
	}
	return hp, ""
}

// orderedObject is a JSON object with its members in document order.
type orderedObject []keyValue

type keyValue struct {
	key   string
	value json.RawMessage
}

// get returns the first member named key: with duplicate keys the first
// one wins consistently, like everywhere else in the store.
func (o orderedObject) get(key string) (json.RawMessage, bool) {
	for _, kv := range o {
		if kv.key == key {
			return kv.value, true
		}
	}
	return nil, false
}

func (o orderedObject) hasAny(keys map[string]bool) bool {
	for _, kv := range o {
		if keys[kv.key] {
			return true
		}
	}
	return false
}

// decodeOrderedObject decodes a JSON object keeping member order, so that
// "first entry wins" is well defined within one document.
func decodeOrderedObject(data []byte) (orderedObject, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, sanitizeJSONError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("expected a JSON object")
	}
	var out orderedObject
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, sanitizeJSONError(err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("malformed JSON: expected an object key")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, sanitizeJSONError(err)
		}
		out = append(out, keyValue{key: key, value: v})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, sanitizeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed JSON: unexpected data after the top-level object")
	}
	return out, nil
}

// sanitizeJSONError rewords encoding/json errors so that no byte of the
// input (which may be a secret) is quoted: json.SyntaxError messages quote
// the offending character.
func sanitizeJSONError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte offset %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Errorf("field %q must be a JSON %s", typ.Field, typ.Type.Kind())
		}
		return fmt.Errorf("unexpected JSON %s", typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: unexpected end of input")
	default:
		return errors.New("malformed JSON")
	}
}
