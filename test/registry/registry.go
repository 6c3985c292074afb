package registrytest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// AuthMode selects how the registry authenticates clients.
type AuthMode string

// Authentication modes.
const (
	AuthNone     AuthMode = "none"     // anyone may pull and push
	AuthHtpasswd AuthMode = "htpasswd" // HTTP Basic against a bcrypt htpasswd file
	AuthToken    AuthMode = "token"    // bearer tokens from the harness's TokenIssuer
)

// Options configures Start.
type Options struct {
	Auth AuthMode // empty means AuthNone
	TLS  bool     // serve HTTPS with a certificate from a test CA
	// Users are the accounts for htpasswd and token modes.
	Users []User
	// AllowAnonymous and AnonymousActions configure the token issuer for
	// requests without credentials (token mode only).
	AllowAnonymous   bool
	AnonymousActions []string
	// Binary is the registry binary; empty means $OCISYNC_TEST_REGISTRY.
	Binary string
	// Host is the IP address to listen on and to name the registry by;
	// empty means 127.0.0.1. The cluster suite gives its node's address,
	// which Pods reach too.
	Host string
	// Notify, when its URL is set, makes the registry send its event
	// notifications there, with Authorization: Bearer Token.
	Notify Notify
}

// Notify is a notifications endpoint of the registry.
type Notify struct {
	URL, Token string
}

// Registry is a running distribution registry.
type Registry struct {
	Host   string   // "127.0.0.1:port", the reference prefix
	URL    string   // "http://" or "https://" + Host
	Auth   AuthMode // how clients authenticate
	TLS    bool     // whether URL is https
	CAFile string   // PEM file of the CA to trust; empty without TLS
	PKI    *PKI     // the test CA and server certificate; nil without TLS
	// Tokens is the token issuer in token mode, nil otherwise.
	Tokens *TokenIssuer
	// LogFile holds the registry's output, for diagnosing failures.
	LogFile string
	// StorageDir is the filesystem storage root; tests may corrupt blobs
	// under docker/registry/v2/blobs to exercise digest checks.
	StorageDir string

	users map[string]User
	// bin and cfgFile are what Restart runs again.
	bin, cfgFile string
	// mu guards stop, which ends the running process (nil when stopped).
	mu   sync.Mutex
	stop func()
}

// startAttempts bounds retries when the chosen free port is taken between
// probing it and the registry binding it.
const startAttempts = 3

// readyTimeout bounds how long Start waits for /v2/ to answer.
const readyTimeout = 30 * time.Second

// Start runs a registry configured by opts on 127.0.0.1 and a free port,
// waits until /v2/ answers and stops it (kill and wait) in t.Cleanup.
func Start(t T, opts Options) *Registry {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = BinaryFromEnv(t, EnvRegistry)
	}
	if opts.Auth == "" {
		opts.Auth = AuthNone
	}
	dir := t.TempDir()
	r := &Registry{
		Auth:       opts.Auth,
		TLS:        opts.TLS,
		LogFile:    filepath.Join(dir, "registry.log"),
		StorageDir: filepath.Join(dir, "data"),
		users:      map[string]User{},
	}
	for _, u := range opts.Users {
		r.users[u.Name] = u
	}
	if opts.TLS {
		r.PKI = NewPKI(t)
		r.CAFile = r.PKI.CAFile
	}

	var authYAML string
	switch opts.Auth {
	case AuthNone:
	case AuthHtpasswd:
		path := filepath.Join(dir, "htpasswd")
		writeHtpasswd(t, path, opts.Users)
		authYAML = fmt.Sprintf("auth:\n  htpasswd:\n    realm: ocisync-test\n    path: %q\n", path)
	case AuthToken:
		r.Tokens = NewTokenIssuer(t, TokenOptions{
			Users:            opts.Users,
			AllowAnonymous:   opts.AllowAnonymous,
			AnonymousActions: opts.AnonymousActions,
			PKI:              r.PKI,
		})
		authYAML = fmt.Sprintf("auth:\n  token:\n    realm: %q\n    service: %q\n    issuer: %q\n    jwks: %q\n",
			r.Tokens.Realm, r.Tokens.Service, r.Tokens.Issuer, r.Tokens.JWKSFile)
	default:
		t.Fatalf("registrytest: unknown auth mode %q; use AuthNone, AuthHtpasswd or AuthToken", opts.Auth)
	}

	ip := opts.Host
	if ip == "" {
		ip = "127.0.0.1"
	}
	for attempt := 1; ; attempt++ {
		port := freePort(t, ip)
		r.Host = net.JoinHostPort(ip, strconv.Itoa(port))
		r.URL = "http://" + r.Host
		tlsYAML := ""
		if opts.TLS {
			r.URL = "https://" + r.Host
			tlsYAML = fmt.Sprintf("  tls:\n    certificate: %q\n    key: %q\n", r.PKI.CertFile, r.PKI.KeyFile)
		}
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: %q
%s%s%s`, r.StorageDir, r.Host, randomHex(t, 16), tlsYAML, authYAML, notifyYAML(opts.Notify))
		cfgFile := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatalf("write registry config %s: %v", cfgFile, err)
		}
		r.bin, r.cfgFile = bin, cfgFile
		err := r.run(false)
		if err == nil {
			t.Cleanup(func() {
				r.halt()
				if failed(t) {
					t.Logf("registry %s log (%s):\n%s", r.Host, r.LogFile, r.logTail())
				}
			})
			return r
		}
		if attempt == startAttempts || !strings.Contains(r.logTail(), "address already in use") {
			t.Fatalf("registrytest: start registry %s (%s): %v\nregistry log (%s):\n%s", bin, r.Host, err, r.LogFile, r.logTail())
		}
		t.Logf("registrytest: port %s was taken, retrying", r.Host)
	}
}

// notifyYAML is the notifications block for n, "" without a URL. The
// short backoff makes a refused notification come again soon.
func notifyYAML(n Notify) string {
	if n.URL == "" {
		return ""
	}
	return fmt.Sprintf(`notifications:
  endpoints:
    - name: ocisync
      url: %q
      headers:
        Authorization: [%q]
      timeout: 2s
      threshold: 3
      backoff: 200ms
`, n.URL, "Bearer "+n.Token)
}

// run starts the process and waits for readiness; on success r.stop ends
// it, on failure it is already stopped. A restart appends to the log, so
// that it keeps what the first run said.
func (r *Registry) run(restart bool) error {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if restart {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logf, err := os.OpenFile(r.LogFile, flags, 0o600)
	if err != nil {
		return fmt.Errorf("create log file: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(r.bin, "serve", r.cfgFile)
	cmd.Dir = filepath.Dir(r.cfgFile)
	// The registry exports traces through OpenTelemetry autoexport; turn
	// exporters off so it does not dial a collector.
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	if err := r.waitReady(exited); err != nil {
		stop()
		return err
	}
	r.mu.Lock()
	r.stop = stop
	r.mu.Unlock()
	return nil
}

// halt ends the running process, if any, and waits for it to exit.
func (r *Registry) halt() {
	r.mu.Lock()
	stop := r.stop
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Stop kills the registry and waits for it to exit, as a crash or a node
// going away would: connections in use are cut and new ones refused until
// Restart. Stopping a stopped registry does nothing.
func (r *Registry) Stop(t T) {
	t.Helper()
	r.halt()
}

// Restart stops the registry if it runs, then starts it again on the same
// address with the same configuration and storage, so everything pushed
// before is still there, and waits until /v2/ answers. The process is
// still stopped by the Cleanup of the test that started it.
func (r *Registry) Restart(t T) {
	t.Helper()
	r.halt()
	if err := r.run(true); err != nil {
		t.Fatalf("registrytest: restart registry %s on %s: %v (another process may have taken the port)\nregistry log (%s):\n%s",
			r.bin, r.Host, err, r.LogFile, r.logTail())
	}
}

func (r *Registry) waitReady(exited <-chan struct{}) error {
	client := r.Client()
	client.Timeout = 2 * time.Second
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the registry exited before answering /v2/")
		default:
		}
		resp, err := client.Get(r.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/ answered %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("/v2/ did not answer within %s: %v", readyTimeout, lastErr)
}

// logTail returns the end of the registry log.
func (r *Registry) logTail() string {
	b, err := os.ReadFile(r.LogFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Client returns an HTTP client that trusts the registry's CA.
func (r *Registry) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if r.PKI != nil {
		tr.TLSClientConfig = r.PKI.ClientConfig()
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Ref returns a reference to repo in this registry; ref is a tag, a
// digest ("sha256:…"), "tag@sha256:…", or empty for the bare repository.
func (r *Registry) Ref(repo, ref string) string {
	switch {
	case ref == "":
		return r.Host + "/" + repo
	case strings.HasPrefix(ref, "sha256:"):
		return r.Host + "/" + repo + "@" + ref
	default:
		return r.Host + "/" + repo + ":" + ref
	}
}

// OrasFlags returns the oras flags to reach this registry: --plain-http or
// --ca-file, and --registry-config when dockerConfig is not empty.
func (r *Registry) OrasFlags(dockerConfig string) []string {
	return r.clientFlags("--registry-config", dockerConfig)
}

// OcisyncFlags returns the ocisync flags to reach this registry:
// --plain-http or --ca-file, and --docker-config when dockerConfig is not
// empty.
func (r *Registry) OcisyncFlags(dockerConfig string) []string {
	return r.clientFlags("--docker-config", dockerConfig)
}

func (r *Registry) clientFlags(configFlag, dockerConfig string) []string {
	var f []string
	if r.TLS {
		f = append(f, "--ca-file", r.CAFile)
	} else {
		f = append(f, "--plain-http")
	}
	if dockerConfig != "" {
		f = append(f, configFlag, dockerConfig)
	}
	return f
}

// Password returns the password of a configured user, failing t when the
// user is unknown.
func (r *Registry) Password(t T, user string) string {
	t.Helper()
	u, ok := r.users[user]
	if !ok {
		t.Fatalf("registrytest: no user %q configured on registry %s", user, r.Host)
	}
	return u.Password
}

// Credential is what a docker config.json stores for one registry.
type Credential struct {
	Username      string
	Password      string
	IdentityToken string // OAuth2 refresh token, docker's "identitytoken"
}

// WriteDockerConfig writes a docker config.json under t.TempDir() holding
// user's username and password for this registry and returns its path.
// An empty user writes a config with no credentials.
func (r *Registry) WriteDockerConfig(t T, user string) string {
	t.Helper()
	if user == "" {
		return r.WriteDockerConfigCredential(t, Credential{})
	}
	return r.WriteDockerConfigCredential(t, Credential{Username: user, Password: r.Password(t, user)})
}

// WriteDockerConfigIdentityToken writes a docker config.json holding the
// token issuer's identity token for user (token mode only).
func (r *Registry) WriteDockerConfigIdentityToken(t T, user string) string {
	t.Helper()
	if r.Tokens == nil {
		t.Fatalf("registrytest: identity tokens need a registry started with AuthToken")
	}
	tok := r.Tokens.RefreshToken(user)
	if tok == "" {
		t.Fatalf("registrytest: no user %q configured on the token issuer", user)
	}
	return r.WriteDockerConfigCredential(t, Credential{Username: user, IdentityToken: tok})
}

// WriteDockerConfigCredential writes a docker config.json holding c for
// this registry (no entry when c is empty) and returns its path.
func (r *Registry) WriteDockerConfigCredential(t T, c Credential) string {
	t.Helper()
	auths := map[string]any{}
	if c != (Credential{}) {
		entry := map[string]string{
			"auth": base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password)),
		}
		if c.IdentityToken != "" {
			entry["identitytoken"] = c.IdentityToken
		}
		auths[r.Host] = entry
	}
	data, err := json.MarshalIndent(map[string]any{"auths": auths}, "", "  ")
	if err != nil {
		t.Fatalf("encode docker config: %v", err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write docker config %s: %v", path, err)
	}
	return path
}

// writeHtpasswd writes bcrypt entries; the minimum cost keeps per-request
// checks in the registry cheap.
func writeHtpasswd(t T, path string, users []User) {
	t.Helper()
	var buf bytes.Buffer
	for _, u := range users {
		if strings.ContainsAny(u.Name, ":\n") {
			t.Fatalf("registrytest: user name %q may not contain ':' or a newline", u.Name)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("hash password of user %q: %v", u.Name, err)
		}
		fmt.Fprintf(&buf, "%s:%s\n", u.Name, h)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatalf("write htpasswd %s: %v", path, err)
	}
}

// freePort asks the kernel for a free TCP port on ip.
func freePort(t T, ip string) int {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// BlobPath returns where the filesystem storage keeps the blob with the
// given digest ("sha256:…").
func (r *Registry) BlobPath(digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	if len(hex) < 2 {
		return ""
	}
	return filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs", alg, hex[:2], hex, "data")
}
