// Command testtools is the one program of the test cluster's own images: the
// Pod sandbox ("pause") and the consumer Pods of the cluster suite, which
// read what ocisync published the way a workload would and print it to
// their logs. There is no shell in these images, so every check a consumer
// makes is a subcommand here.
//
//	testtools pause                 sleep until SIGTERM (the sandbox image)
//	testtools cat FILE...           print files, then exit
//	testtools show DIR              print every file of DIR as "== NAME" and its bytes, then sleep
//	testtools stat PATH...          print "PATH mode uid gid" for each path
//	testtools watch ROOT DIR        follow ROOT/current/DIR (an ocisync volume), see below
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: testtools pause|cat|show|stat|watch ...")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "pause":
		waitForSignal()
	case "cat":
		for _, f := range args {
			b, err := os.ReadFile(f)
			if err != nil {
				fail(err.Error())
			}
			_, _ = os.Stdout.Write(b)
		}
	case "show":
		if len(args) != 1 {
			fail("usage: testtools show DIR")
		}
		show(args[0])
		waitForSignal()
	case "stat":
		for _, p := range args {
			st, err := os.Stat(p)
			if err != nil {
				fail(err.Error())
			}
			sys := st.Sys().(*syscall.Stat_t)
			fmt.Printf("%s %s %d %d\n", p, st.Mode(), sys.Uid, sys.Gid)
		}
	case "watch":
		if len(args) != 2 {
			fail("usage: testtools watch ROOT DIR")
		}
		watch(args[0], args[1], 100*time.Millisecond)
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "testtools:", msg)
	os.Exit(1)
}

func waitForSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}

// show prints the regular files of dir (a mounted ConfigMap: its keys are
// symlinks into a ..data folder, which Stat follows) in name order.
func show(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		fail(err.Error())
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			fail(err.Error())
		}
		fmt.Printf("== %s %d\n%s\n", e.Name(), len(b), b)
	}
	fmt.Println("== end")
}

// watch follows root/current as a careful reader of an ocisync volume does:
// resolve the link once, then read that version's files. The folder sub of
// the versions the suite pushes holds a VERSION file and a SUMS file with
// the SHA-256 of every other file ("HEX  NAME" lines); each time the
// version changes, watch checks it whole and prints "seen VERSION ok" or
// "BAD VERSION: why". A reader must never see a version half written.
func watch(root, sub string, period time.Duration) {
	last := ""
	for {
		target, err := os.Readlink(filepath.Join(root, "current"))
		if err != nil {
			if last != "missing" {
				fmt.Printf("no current yet: %v\n", err)
				last = "missing"
			}
		} else if target != last {
			dir := target
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(root, dir)
			}
			version, problem := check(filepath.Join(dir, sub))
			if problem != "" {
				fmt.Printf("BAD %s (%s): %s\n", version, target, problem)
			} else {
				fmt.Printf("seen %s ok (%s)\n", version, target)
			}
			last = target
		}
		time.Sleep(period)
	}
}

// check reads dir's VERSION and verifies every file SUMS lists.
func check(dir string) (version, problem string) {
	v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil {
		return "?", err.Error()
	}
	version = strings.TrimSpace(string(v))
	sums, err := os.ReadFile(filepath.Join(dir, "SUMS"))
	if err != nil {
		return version, err.Error()
	}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		want, name, ok := strings.Cut(line, "  ")
		if !ok {
			return version, "malformed SUMS line " + line
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return version, err.Error()
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != want {
			return version, name + " does not match SUMS"
		}
	}
	return version, ""
}
