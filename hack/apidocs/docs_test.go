package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The guides in docs/ are written by hand; these tests keep them from
// drifting away from the API and the repository.

var docsDir = filepath.Join("..", "..", "docs")

// TestTroubleshootingCoversEveryReason: every condition reason of the API
// has a row in docs/troubleshooting.md, so a new reason cannot ship
// unexplained.
func TestTroubleshootingCoversEveryReason(t *testing.T) {
	p, err := parsePackage(filepath.Join("..", "..", "api", "v1alpha1"))
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, g := range p.consts {
		if g.title == "Condition reasons" {
			for _, c := range g.consts {
				reasons = append(reasons, c.value)
			}
		}
	}
	if len(reasons) == 0 {
		t.Fatal(`api/v1alpha1 has no const block titled "Condition reasons"`)
	}
	doc, err := os.ReadFile(filepath.Join(docsDir, "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reasons {
		if !strings.Contains(string(doc), "\n| `"+r+"` |") {
			t.Errorf("docs/troubleshooting.md has no row for the reason %s", r)
		}
	}
}

// TestDocsLinks: every relative link of docs/*.md leads to a file that
// exists and, with a #fragment, to one of its headings.
func TestDocsLinks(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(stripCode(string(text)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), filepath.FromSlash(path))
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s: link %s: %v", filepath.Base(f), target, err)
				continue
			}
			if frag == "" {
				continue
			}
			anchors, err := headingAnchors(dest)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors[frag] {
				t.Errorf("%s: link %s: %s has no heading with that anchor", filepath.Base(f), target, filepath.Base(dest))
			}
		}
	}
}

// TestDocsMakeTargets: every `make TARGET` the docs tell people to run
// exists in the Makefile.
func TestDocsMakeTargets(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := regexp.MustCompile("(?m)(?:^|`|\\$ )make ([a-z][a-z0-9-]*)")
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmd.FindAllStringSubmatch(string(text), -1) {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m[1]) + `:`).Match(makefile) {
				t.Errorf("%s: make %s: the Makefile has no such target", filepath.Base(f), m[1])
			}
		}
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a
// markdown file (an HTML file or other target has none).
func headingAnchors(path string) (map[string]bool, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	anchors := map[string]bool{}
	fenced := false
	for line := range strings.SplitSeq(string(text), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		heading := strings.TrimSpace(strings.TrimLeft(line, "#"))
		anchors[anchor(strings.ReplaceAll(heading, "`", ""))] = true
	}
	return anchors, nil
}

// codeSpans matches inline code, one or more backquotes deep.
var codeSpans = regexp.MustCompile("(`+)[^`]+?(`+)")

// stripCode blanks code: fenced blocks, whose "# comments" are no
// headings, and code spans, whose brackets are no links.
func stripCode(text string) string {
	var b strings.Builder
	fenced := false
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			b.WriteString("\n")
			continue
		}
		if !fenced {
			b.WriteString(codeSpans.ReplaceAllString(line, "``"))
		}
		b.WriteString("\n")
	}
	return b.String()
}
