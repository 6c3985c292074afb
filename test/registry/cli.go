package registrytest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DefaultTimeout bounds one CLI invocation.
const DefaultTimeout = 2 * time.Minute

// CLI runs a command-line tool in an isolated environment: HOME,
// DOCKER_CONFIG, XDG dirs and TMPDIR point into the test's temp dir, so the
// tool never reads or writes the machine's configuration or credentials.
type CLI struct {
	Name    string        // for messages, e.g. "oras"
	Path    string        // absolute path of the binary
	Dir     string        // working directory; relative paths resolve here
	Timeout time.Duration // per invocation; zero means DefaultTimeout
	env     []string
}

// Oras returns the oras CLI named by $OCISYNC_TEST_ORAS.
func Oras(t T) *CLI {
	t.Helper()
	return NewCLI(t, "oras", BinaryFromEnv(t, EnvOras))
}

// Cosign returns the cosign CLI named by $OCISYNC_TEST_COSIGN, with an
// empty key password and its Sigstore state (TUF_ROOT) in the test's
// folder: it never reaches for the public Sigstore instance's files.
func Cosign(t T) *CLI {
	t.Helper()
	c := NewCLI(t, "cosign", BinaryFromEnv(t, EnvCosign))
	c.env = append(c.env, "COSIGN_PASSWORD=", "TUF_ROOT="+filepath.Join(c.Home(), ".sigstore", "root"), "COSIGN_EXPERIMENTAL=0")
	return c
}

// Ocisync returns the ocisync CLI named by $OCISYNC_TEST_BIN.
func Ocisync(t T) *CLI {
	t.Helper()
	return NewCLI(t, "ocisync", BinaryFromEnv(t, EnvOcisync))
}

// NewCLI prepares an isolated environment under t.TempDir() for the binary
// at path.
func NewCLI(t T, name, path string) *CLI {
	t.Helper()
	root := t.TempDir()
	home := filepath.Join(root, "home")
	dirs := map[string]string{
		"HOME":            home,
		"DOCKER_CONFIG":   filepath.Join(home, ".docker"),
		"XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		"XDG_CACHE_HOME":  filepath.Join(home, ".cache"),
		"XDG_DATA_HOME":   filepath.Join(home, ".local", "share"),
		"TMPDIR":          filepath.Join(root, "tmp"),
	}
	work := filepath.Join(root, "work")
	env := []string{"PATH=" + os.Getenv("PATH"), "LANG=C", "NO_COLOR=1", "TERM=dumb"}
	for k, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("create %s for %s: %v", d, name, err)
		}
		env = append(env, k+"="+d)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatalf("create %s for %s: %v", work, name, err)
	}
	// Keep coverage collection working for binaries built with -cover.
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		env = append(env, "GOCOVERDIR="+d)
	}
	return &CLI{Name: name, Path: path, Dir: work, env: env}
}

// In returns a copy of c that runs in dir.
func (c *CLI) In(dir string) *CLI {
	cp := *c
	cp.Dir = dir
	return &cp
}

// Home returns the HOME the tool runs with.
func (c *CLI) Home() string {
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			return v
		}
	}
	return ""
}

// Result is the outcome of one invocation.
type Result struct {
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int
}

// Run runs the tool with args and returns its result whatever the exit
// code. It fails t only if the tool cannot be started or times out.
func (c *CLI) Run(t T, args ...string) Result {
	t.Helper()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Dir = c.Dir
	cmd.Env = c.env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out after %s\nstdout:\n%s\nstderr:\n%s", c.Name, strings.Join(args, " "), timeout, res.Stdout, res.Stderr)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	default:
		t.Fatalf("%s %s: could not run %s: %v", c.Name, strings.Join(args, " "), c.Path, err)
	}
	return res
}

// MustRun runs the tool and fails t, showing its output, unless it exits 0.
func (c *CLI) MustRun(t T, args ...string) Result {
	t.Helper()
	res := c.Run(t, args...)
	if res.ExitCode != 0 {
		t.Fatalf("%s %s: exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", c.Name, strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
	}
	return res
}

// MustFail runs the tool and fails t, showing its output, if it exits 0.
func (c *CLI) MustFail(t T, args ...string) Result {
	t.Helper()
	res := c.Run(t, args...)
	if res.ExitCode == 0 {
		t.Fatalf("%s %s: exit code 0, want failure\nstdout:\n%s\nstderr:\n%s", c.Name, strings.Join(args, " "), res.Stdout, res.Stderr)
	}
	return res
}

// LastLine returns the last non-empty line of stdout, trimmed.
func (r Result) LastLine() string {
	lines := nonEmptyLines(r.Stdout)
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// StderrLines returns the non-empty lines of stderr.
func (r Result) StderrLines() []string {
	return nonEmptyLines(r.Stderr)
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
