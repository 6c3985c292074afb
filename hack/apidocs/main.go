// Command apidocs writes the API reference (docs/api.md) from the Go types
// of an API package, so that the reference cannot drift from the CRD that
// controller-gen makes out of the same source.
//
//	go run ./hack/apidocs -out docs/api.md ./api/v1alpha1         (make api-docs)
//	go run ./hack/apidocs -check -out docs/api.md ./api/v1alpha1  (make check)
//
// With -check nothing is written: it fails when regenerating would change
// the file.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("apidocs", flag.ContinueOnError)
	flags.SetOutput(stderr)
	out := flags.String("out", "", "markdown file to write (default: standard output)")
	check := flags.Bool("check", false, "write nothing; fail when -out is not what would be generated")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "Usage: apidocs [-check] [-out FILE] PACKAGE_DIR")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() != 1 {
		fmt.Fprintln(stderr, "apidocs: give exactly one package folder, such as ./api/v1alpha1")
		return 2
	}
	if *check && *out == "" {
		fmt.Fprintln(stderr, "apidocs: -check needs -out, the file to compare")
		return 2
	}
	doc, err := generate(flags.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "apidocs: %v\n", err)
		return 1
	}
	switch {
	case *check:
		current, err := os.ReadFile(*out)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "apidocs: %v\n", err)
			return 1
		}
		if !bytes.Equal(current, doc) {
			fmt.Fprintf(stderr, "%s is out of date: run make api-docs\n", *out)
			return 1
		}
	case *out == "":
		if _, err := stdout.Write(doc); err != nil {
			fmt.Fprintf(stderr, "apidocs: %v\n", err)
			return 1
		}
	default:
		if err := os.WriteFile(*out, doc, 0o644); err != nil {
			fmt.Fprintf(stderr, "apidocs: %v\n", err)
			return 1
		}
	}
	return 0
}
