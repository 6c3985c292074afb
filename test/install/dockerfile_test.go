package install

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// parseDockerfile reads the instructions of a Dockerfile, without
// comments, with backslash continuations joined.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("reading the Dockerfile: %v", err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		more := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		if more {
			cur.WriteString(" ")
			continue
		}
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the Dockerfile: %v", err)
	}
	return out
}

// finalStage returns the instructions of the Dockerfile's last stage, from
// its FROM on.
func finalStage(ins []instruction) []instruction {
	last := 0
	for i, in := range ins {
		if in.cmd == "FROM" {
			last = i
		}
	}
	return ins[last:]
}

// TestDockerfileImage checks the image the Dockerfile describes, without a
// container engine: a distroless static base, a numeric non-root USER (the
// kubelet can only enforce runAsNonRoot for a numeric one), and the binary
// where the entrypoint and the install bundle's Deployment expect it.
func TestDockerfileImage(t *testing.T) {
	final := finalStage(parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile")))
	if !strings.Contains(final[0].args, "distroless/static") || !strings.HasSuffix(final[0].args, ":nonroot") {
		t.Errorf("final stage FROM %s; want gcr.io/distroless/static:nonroot: the binary is static and needs no more", final[0].args)
	}
	var user, entrypoint, copied string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
				t.Errorf("ENTRYPOINT %s: want the exec form, a JSON array", in.args)
				continue
			}
			entrypoint = argv[0]
		case "COPY":
			if f := strings.Fields(in.args); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				copied = f[2]
			}
		}
	}
	uid, gid, _ := strings.Cut(user, ":")
	for _, id := range []string{uid, gid} {
		if n, err := strconv.Atoi(id); err != nil || n == 0 {
			t.Errorf("USER %q: want numeric non-root ids, uid:gid such as 65532:65532", user)
			break
		}
	}
	if entrypoint == "" || entrypoint != copied {
		t.Errorf("ENTRYPOINT runs %q, the binary is copied to %q: they must be the same path", entrypoint, copied)
	}
	dep := deploymentOf(t, decodeObjects(t, buildInstaller(t, "example.com/ocisync:v0")))
	if cmd := managerContainer(t, dep).Command; len(cmd) == 0 || cmd[0] != entrypoint {
		t.Errorf("the Deployment's manager runs %v; the image's binary is %s", cmd, entrypoint)
	}
}

// TestDockerfileBuildsStaticBinary builds the binary the way the
// Dockerfile's go build RUN line does, in a copy of the build context
// (.dockerignore applied), and checks that it is statically linked, as a
// distroless static image needs, and runs.
func TestDockerfileBuildsStaticBinary(t *testing.T) {
	root := repoRoot(t)
	var run string
	for _, in := range parseDockerfile(t, filepath.Join(root, "Dockerfile")) {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			run = in.args
		}
	}
	if run == "" {
		t.Fatalf("the Dockerfile has no RUN line with go build")
	}
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(run)
	if out == nil || strings.Contains(out[1], "/") {
		t.Fatalf("the go build RUN line %q names no -o output in the work directory; update this test", run)
	}

	ctx := filepath.Join(t.TempDir(), "context")
	copyContext(t, root, ctx, readDockerignore(t, filepath.Join(root, ".dockerignore")))

	const version = "v0.0.0-dockerfile-test"
	cmd := exec.Command("sh", "-c", run)
	cmd.Dir = ctx
	// The build arguments: BuildKit sets TARGETOS and TARGETARCH.
	cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH, "VERSION="+version, "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build, %s, failed in a copy of the build context: %v\n%s", run, err, b)
	}
	bin := filepath.Join(ctx, out[1])

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the built binary is not an ELF file: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary asks for a dynamic loader (PT_INTERP): it does not run on distroless/static; build with CGO_ENABLED=0")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v): build with CGO_ENABLED=0", libs, err)
	}

	if runtime.GOOS != "linux" {
		return // a linux binary; it cannot run here
	}
	got, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "ocisync "+version {
		t.Errorf("%s version: %q (%v); want \"ocisync %s\": VERSION must reach the binary", out[1], got, err, version)
	}
}

// readDockerignore returns the patterns of a .dockerignore file.
func readDockerignore(t *testing.T, path string) []*regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading .dockerignore: %v", err)
	}
	var out []*regexp.Regexp
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not supported by this test; extend readDockerignore", line)
		}
		out = append(out, dockerignorePattern(line))
	}
	return out
}

// dockerignorePattern turns a .dockerignore pattern into a regexp over
// slash-separated paths relative to the context, as Docker matches them:
// '*' and '?' within one path element, '**' across any number of them. A
// pattern that matches a folder excludes everything in it.
func dockerignorePattern(p string) *regexp.Regexp {
	p = strings.Trim(filepath.ToSlash(filepath.Clean(p)), "/")
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			re.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			re.WriteString(".*")
			i++
		case c == '*':
			re.WriteString("[^/]*")
		case c == '?':
			re.WriteString("[^/]")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String())
}

// copyContext copies the files of src that patterns do not exclude into
// dst, as Docker sends the build context.
func copyContext(t *testing.T, src, dst string, patterns []*regexp.Regexp) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." {
			for _, re := range patterns {
				if re.MatchString(rel) {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o644)
		}
		return nil // symlinks and the like: the source has none that matter
	})
	if err != nil {
		t.Fatalf("copying the build context: %v", err)
	}
}

func TestDockerignorePattern(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"bin/", []string{"bin"}, []string{"bin2", "a/bin", "binary"}},
		{".git/", []string{".git"}, []string{"a/.git", "x.git"}},
		{"**/*_test.go", []string{"a_test.go", "internal/cli/push_test.go"}, []string{"push.go", "a_test.go.orig"}},
		{"config/", []string{"config"}, []string{"internal/config"}},
		{"*.md", []string{"README.md"}, []string{"docs/a.md"}},
		{"/.installer.*/", []string{".installer.ab12"}, []string{"x/.installer.ab"}},
	}
	for _, tt := range tests {
		re := dockerignorePattern(tt.pattern)
		for _, p := range tt.match {
			if !re.MatchString(p) {
				t.Errorf("%q should exclude %q", tt.pattern, p)
			}
		}
		for _, p := range tt.noMatch {
			if re.MatchString(p) {
				t.Errorf("%q should not exclude %q", tt.pattern, p)
			}
		}
	}
}
