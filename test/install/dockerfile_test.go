package install

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ocisync/ocisync/hack/ociimage"
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

// TestDockerfileImage checks, without a container engine, that the
// Dockerfile and make image describe the same image: the same files with
// the same types, modes and owners, the same passwd and group, a numeric
// non-root USER (the kubelet can only enforce runAsNonRoot for a numeric
// one), the same entrypoint, environment and working folder, and the
// binary where the install bundle's Deployment expects it. The Dockerfile
// side is read from its instructions (see dockerfileImage); the make image
// side is the layout hack/image writes, with stand-ins for the binaries and
// the CA certificates.
func TestDockerfileImage(t *testing.T) {
	root := repoRoot(t)
	df := dockerfileImage(t, parseDockerfile(t, filepath.Join(root, "Dockerfile")))

	uid, gid, _ := strings.Cut(df.user, ":")
	for _, id := range []string{uid, gid} {
		if n, err := strconv.Atoi(id); err != nil || n == 0 {
			t.Errorf("Dockerfile USER %q: want numeric non-root ids, uid:gid such as 65532:65532", df.user)
			break
		}
	}
	if len(df.entrypoint) == 0 {
		t.Fatalf("the Dockerfile has no ENTRYPOINT in the exec form")
	}
	if f, ok := df.files[df.entrypoint[0]]; !ok || !f.mode.IsRegular() || f.mode&0o111 == 0 {
		t.Errorf("ENTRYPOINT runs %s, which the Dockerfile does not copy as an executable file (%v)", df.entrypoint[0], f.mode)
	}
	dep := deploymentOf(t, decodeObjects(t, buildInstaller(t, "example.com/ocisync:v0")))
	if cmd := managerContainer(t, dep).Command; len(cmd) == 0 || cmd[0] != df.entrypoint[0] {
		t.Errorf("the Deployment's manager runs %v; the image's binary is %s", cmd, df.entrypoint[0])
	}

	// The files the Dockerfile copies from the build context must be in
	// it: .dockerignore leaves out hack/ but for them.
	ctx := filepath.Join(t.TempDir(), "context")
	copyContext(t, root, ctx, readDockerignore(t, filepath.Join(root, ".dockerignore")))
	for _, src := range df.fromContext {
		if _, err := os.Stat(filepath.Join(ctx, filepath.FromSlash(src))); err != nil {
			t.Errorf("the Dockerfile copies %s from the build context, but .dockerignore leaves it out: %v", src, err)
		}
	}

	_, _, imgs := makeImageLayout(t)
	platforms := 0
	for _, img := range imgs {
		platforms++
		t.Run(img.Platform(), func(t *testing.T) {
			if img.User != df.user || !slices.Equal(img.Entrypoint, df.entrypoint) || len(img.Cmd) != 0 ||
				!slices.Equal(img.Env, df.env) || img.WorkingDir != df.workdir {
				t.Errorf("make image: User %q Entrypoint %q Cmd %q Env %q WorkingDir %q\nDockerfile: USER %q ENTRYPOINT %q no CMD, ENV %q WORKDIR %q",
					img.User, img.Entrypoint, img.Cmd, img.Env, img.WorkingDir, df.user, df.entrypoint, df.env, df.workdir)
			}
			got := map[string]imageFile{}
			for _, f := range img.Files {
				got[f.Path] = imageFile{mode: f.Mode, uid: f.UID, gid: f.GID}
				if src, ok := df.contextFiles[f.Path]; ok {
					want, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(src)))
					if err != nil || !bytes.Equal(f.Data, want) {
						t.Errorf("make image's %s differs from %s, which the Dockerfile copies (%v)", f.Path, src, err)
					}
				}
			}
			for p, want := range df.files {
				if g, ok := got[p]; !ok {
					t.Errorf("the Dockerfile makes %s (%v %d:%d), make image does not", p, want.mode, want.uid, want.gid)
				} else if g != want {
					t.Errorf("%s: make image has %v %d:%d, the Dockerfile %v %d:%d", p, g.mode, g.uid, g.gid, want.mode, want.uid, want.gid)
				}
			}
			for p, g := range got {
				if _, ok := df.files[p]; !ok {
					t.Errorf("make image writes %s (%v %d:%d), the Dockerfile does not", p, g.mode, g.uid, g.gid)
				}
			}
		})
	}
	if platforms != 2 {
		t.Errorf("make image wrote %d platforms, want 2 (linux/amd64 and linux/arm64)", platforms)
	}
}

// makeImageLayout runs hack/image, the program make image runs, with small
// stand-ins for the binaries it packs and the ca-certificates package, as
// make image IMG=example.com/ocisync:v0 does, and returns the layout it
// writes, the digest of the index tagged v0 and its images.
func makeImageLayout(t *testing.T) (string, digest.Digest, []ociimage.Image) {
	t.Helper()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "build")
	for _, p := range []string{"linux-amd64", "linux-arm64"} {
		if err := os.MkdirAll(filepath.Join(bin, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, p, "ocisync"), []byte("binary for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	certs := filepath.Join(tmp, "ca-certificates", "usr", "share", "ca-certificates", "mozilla")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "Test_CA.crt"), []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "layout")
	cmd := exec.Command("go", "run", "./hack/image", "-image", "example.com/ocisync:v0", "-out", out, "-bin", bin,
		"-ca-certificates", filepath.Join(tmp, "ca-certificates"), "-platforms", "linux/amd64 linux/arm64")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./hack/image: %v\n%s", err, b)
	}
	d, imgs, err := ociimage.ReadLayout(out, "v0")
	if err != nil {
		t.Fatalf("reading the layout hack/image wrote: %v", err)
	}
	return out, d, imgs
}

// imageFile is what the tests compare of a file in an image.
type imageFile struct {
	mode     fs.FileMode
	uid, gid int
}

// dockerImage is the image a Dockerfile's final stage describes.
type dockerImage struct {
	user, workdir   string
	entrypoint, env []string
	files           map[string]imageFile
	// contextFiles maps image paths copied from the build context to
	// their repository paths; fromContext lists those sources.
	contextFiles map[string]string
	fromContext  []string
}

// dockerfileImage works out the files of the image a Dockerfile describes
// by following its instructions, as far as this Dockerfile uses them: a
// final stage FROM scratch; COPY from the build context (owner 0:0, mode
// 644 or 755 as git keeps it); COPY --from=builder of the go build output
// (root's, 755) or of a folder the builder assembles with mkdir -p, cp,
// chmod and chown in a RUN (COPY --from keeps owners and modes). Anything
// else fails the test, which then needs extending with the Dockerfile.
func dockerfileImage(t *testing.T, ins []instruction) dockerImage {
	t.Helper()
	builder := map[string]imageFile{} // absolute paths in the builder stage
	var workspace, buildOutput string
	stage := ""
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			f := strings.Fields(in.args)
			stage = ""
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stage = f[2]
			}
		case "WORKDIR":
			if stage == "builder" {
				workspace = in.args
			}
		case "RUN":
			if stage != "builder" {
				continue
			}
			if m := regexp.MustCompile(`go build .*-o\s+(\S+)`).FindStringSubmatch(in.args); m != nil {
				buildOutput = path.Join(workspace, m[1])
				builder[buildOutput] = imageFile{mode: 0o755}
				continue
			}
			if !strings.HasPrefix(in.args, "go ") { // go mod download
				runShell(t, in.args, builder)
			}
		}
	}

	final := finalStage(ins)
	if f := strings.Fields(final[0].args); len(f) == 0 || f[0] != "scratch" {
		t.Fatalf("the final stage is FROM %s; this test expects FROM scratch, with every file of the image copied in", final[0].args)
	}
	img := dockerImage{files: map[string]imageFile{}, contextFiles: map[string]string{}}
	add := func(p string, f imageFile) {
		img.files[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := img.files[d]; !ok {
				img.files[d] = imageFile{mode: fs.ModeDir | 0o755} // as COPY creates missing folders
			}
		}
	}
	for _, in := range final[1:] {
		switch in.cmd {
		case "COPY":
			args := strings.Fields(in.args)
			from := ""
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				v, ok := strings.CutPrefix(args[0], "--from=")
				if !ok {
					t.Fatalf("COPY %s: this test does not know the flag %s; extend dockerfileImage", in.args, args[0])
				}
				from, args = v, args[1:]
			}
			if len(args) < 2 {
				t.Fatalf("COPY %s: want sources and a destination", in.args)
			}
			srcs, dst := args[:len(args)-1], args[len(args)-1]
			if len(srcs) > 1 && !strings.HasSuffix(dst, "/") {
				t.Fatalf("COPY %s: several sources need a destination folder ending in /", in.args)
			}
			for _, src := range srcs {
				target := dst
				if strings.HasSuffix(dst, "/") && !strings.HasSuffix(src, "/") {
					target = path.Join(dst, path.Base(src))
				}
				switch {
				case from == "":
					info, err := os.Stat(filepath.Join(repoRoot(t), filepath.FromSlash(src)))
					if err != nil || !info.Mode().IsRegular() {
						t.Fatalf("COPY %s: %s is not a file of the repository (%v); this test handles files only", in.args, src, err)
					}
					mode := fs.FileMode(0o644)
					if info.Mode()&0o111 != 0 {
						mode = 0o755
					}
					add(target, imageFile{mode: mode})
					img.contextFiles[target] = src
					img.fromContext = append(img.fromContext, src)
				case from == "builder" && strings.HasSuffix(src, "/"):
					// A folder: what it holds goes into dst.
					prefix := strings.TrimSuffix(src, "/")
					for p, f := range builder {
						if rel, ok := strings.CutPrefix(p, prefix+"/"); ok {
							add(path.Join(dst, rel), f)
						}
					}
				case from == "builder":
					f, ok := builder[src]
					if !ok || f.mode.IsDir() {
						t.Fatalf("COPY %s: the builder stage makes no file %s this test knows of", in.args, src)
					}
					add(target, f)
				default:
					t.Fatalf("COPY %s: --from=%s is not the builder stage; extend dockerfileImage", in.args, from)
				}
			}
		case "USER":
			img.user = in.args
		case "WORKDIR":
			img.workdir = in.args
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				if !strings.Contains(kv, "=") {
					t.Fatalf("ENV %s: this test reads only KEY=VALUE pairs without spaces", in.args)
				}
				img.env = append(img.env, kv)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &img.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: want the exec form, a JSON array", in.args)
			}
		default:
			t.Fatalf("the final stage has %s %s, which this test does not know; extend dockerfileImage", in.cmd, in.args)
		}
	}
	return img
}

// runShell applies a RUN line of commands joined by && (mkdir -p, cp,
// chmod, chown) to files, the builder stage's files that tests follow.
// New folders are root's, 755; copied files root's, 644.
func runShell(t *testing.T, line string, files map[string]imageFile) {
	t.Helper()
	for _, c := range strings.Split(line, "&&") {
		f := strings.Fields(c)
		if len(f) < 2 {
			t.Fatalf("RUN %s: cannot follow %q; extend runShell", line, c)
		}
		switch {
		case f[0] == "mkdir" && f[1] == "-p":
			for _, p := range f[2:] {
				for d := p; d != "/"; d = path.Dir(d) {
					if _, ok := files[d]; !ok {
						files[d] = imageFile{mode: fs.ModeDir | 0o755}
					}
				}
			}
		case f[0] == "cp" && len(f) == 3:
			files[f[2]] = imageFile{mode: 0o644}
		case f[0] == "chmod":
			n, err := strconv.ParseUint(f[1], 8, 32)
			if err != nil {
				t.Fatalf("RUN %s: chmod %s: want an octal mode", line, f[1])
			}
			for _, p := range f[2:] {
				e, ok := files[p]
				if !ok {
					t.Fatalf("RUN %s: chmod of %s, which does not exist yet", line, p)
				}
				e.mode = e.mode.Type() | fs.FileMode(n&0o777)
				if n&0o1000 != 0 {
					e.mode |= fs.ModeSticky
				}
				files[p] = e
			}
		case f[0] == "chown":
			u, g, _ := strings.Cut(f[1], ":")
			uid, err1 := strconv.Atoi(u)
			gid, err2 := strconv.Atoi(g)
			if err1 != nil || err2 != nil {
				t.Fatalf("RUN %s: chown %s: want numeric uid:gid", line, f[1])
			}
			for _, p := range f[2:] {
				e, ok := files[p]
				if !ok {
					t.Fatalf("RUN %s: chown of %s, which does not exist yet", line, p)
				}
				e.uid, e.gid = uid, gid
				files[p] = e
			}
		default:
			t.Fatalf("RUN %s: cannot follow %q; extend runShell", line, c)
		}
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

// ignoreRule is one line of a .dockerignore file.
type ignoreRule struct {
	pattern string // cleaned, without the "!"
	re      *regexp.Regexp
	except  bool // a "!" line: what it matches is sent after all
}

// readDockerignore returns the rules of a .dockerignore file.
func readDockerignore(t *testing.T, file string) []ignoreRule {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading .dockerignore: %v", err)
	}
	var out []ignoreRule
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, except := strings.CutPrefix(line, "!")
		out = append(out, ignoreRule{
			pattern: strings.Trim(filepath.ToSlash(filepath.Clean(p)), "/"),
			re:      dockerignorePattern(p),
			except:  except,
		})
	}
	return out
}

// ignored reports whether Docker leaves the path rel out of the context:
// the last rule that matches rel, or a folder holding it, decides.
func ignored(rules []ignoreRule, rel string) bool {
	out := false
	for _, r := range rules {
		for p := rel; ; {
			if r.re.MatchString(p) {
				out = !r.except
				break
			}
			i := strings.LastIndex(p, "/")
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return out
}

// exceptionBelow reports whether an exception could match something in
// the folder rel, so that Docker has to look into it although it is
// ignored.
func exceptionBelow(rules []ignoreRule, rel string) bool {
	for _, r := range rules {
		literal := r.pattern
		if i := strings.IndexAny(literal, "*?["); i >= 0 {
			literal = literal[:i]
		}
		if r.except && (strings.HasPrefix(literal, rel+"/") || strings.HasPrefix(rel+"/", literal)) {
			return true
		}
	}
	return false
}

// dockerignorePattern turns a .dockerignore pattern into a regexp over
// slash-separated paths relative to the context, as Docker matches them:
// '*' and '?' within one path element, '**' across any number of them. A
// pattern that matches a folder matches everything in it (see ignored).
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

// copyContext copies the files of src that the rules do not leave out
// into dst, as Docker sends the build context.
func copyContext(t *testing.T, src, dst string, rules []ignoreRule) {
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
		if rel != "." && ignored(rules, rel) {
			if d.IsDir() && !exceptionBelow(rules, rel) {
				return filepath.SkipDir
			}
			return nil
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
			// The folder may be ignored itself, with this file an exception.
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
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

// TestDockerignoreExceptions checks that a "!" line sends what it matches
// inside an ignored folder, and only that.
func TestDockerignoreExceptions(t *testing.T) {
	dir := t.TempDir()
	ignore := filepath.Join(dir, ".dockerignore")
	if err := os.WriteFile(ignore, []byte("hack/\n!hack/keep/\n**/*_test.go\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rules := readDockerignore(t, ignore)
	for rel, want := range map[string]bool{
		"hack":                 true,
		"hack/x.sh":            true,
		"hack/keep":            false,
		"hack/keep/etc/passwd": false,
		"hack/keep/a_test.go":  true,
		"hack/keeper/x":        true,
		"main.go":              false,
	} {
		if got := ignored(rules, rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
	if !exceptionBelow(rules, "hack") || exceptionBelow(rules, "docs") || !exceptionBelow(rules, "hack/keep") {
		t.Errorf("exceptionBelow: hack %v, hack/keep %v, docs %v; want true, true, false",
			exceptionBelow(rules, "hack"), exceptionBelow(rules, "hack/keep"), exceptionBelow(rules, "docs"))
	}
}
