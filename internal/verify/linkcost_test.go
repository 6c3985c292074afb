package verify

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// netTrace is the package the grpcnotrace build tag keeps out of the
// binary. sigstore-go's verifier imports the Rekor protobuf types, whose
// package holds gRPC stubs too, so gRPC-Go is linked although ocisync
// makes no gRPC call; gRPC-Go imports golang.org/x/net/trace unless built
// with grpcnotrace, and that package's init registers html/template
// handlers, whose reflective method calls make the linker keep every
// exported method of every type in the binary: 18 MB more binary and
// about 9 MiB more resident memory in the manager (docs/verification.md).
const (
	netTrace       = "golang.org/x/net/trace"
	grpcNoTraceTag = "grpcnotrace"
)

// TestBuildKeepsNetTraceOut checks that the build tag still keeps
// golang.org/x/net/trace out with the gRPC-Go of go.mod, that the
// Makefile and the Dockerfile build with it, and, when the tests have the
// binary (OCISYNC_TEST_BIN, make build's), that it was built so and
// links no symbol of that package.
func TestBuildKeepsNetTraceOut(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-tags", grpcNoTraceTag, ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -tags %s .: %v", grpcNoTraceTag, err)
	}
	for p := range strings.FieldsSeq(string(out)) {
		if p == netTrace {
			t.Errorf("the binary built with -tags %s still imports %s: find what imports it (go list -deps -f '{{.ImportPath}} {{.Imports}}') and keep it out", grpcNoTraceTag, netTrace)
		}
	}

	for file, re := range map[string]*regexp.Regexp{
		"Makefile":   regexp.MustCompile(`(?m)^GOTAGS \?=.*\b` + grpcNoTraceTag + `\b`),
		"Dockerfile": regexp.MustCompile(`go build [^\n]*-tags ` + grpcNoTraceTag + `\b`),
	} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		if !re.Match(b) {
			t.Errorf("%s does not build the binary with -tags %s (want a match of %s)", file, grpcNoTraceTag, re)
		}
	}

	bin := os.Getenv("OCISYNC_TEST_BIN")
	if bin == "" {
		t.Log("OCISYNC_TEST_BIN unset: the built binary is not checked")
		return
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading the build information of %s: %v", bin, err)
	}
	tagged := false
	for _, s := range info.Settings {
		if s.Key == "-tags" && strings.Contains(","+s.Value+",", ","+grpcNoTraceTag+",") {
			tagged = true
		}
	}
	if !tagged {
		t.Errorf("%s was built without -tags %s (settings %v): build it with make build", bin, grpcNoTraceTag, info.Settings)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Logf("%s is not an ELF file (%v): its symbols are not checked", bin, err)
		return
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Logf("%s has no symbol table (%v): its symbols are not checked", bin, err)
		return
	}
	for _, s := range syms {
		if strings.HasPrefix(s.Name, netTrace+".") {
			t.Errorf("%s links %s (symbol %s)", bin, netTrace, s.Name)
			break
		}
	}
}
