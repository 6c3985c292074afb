// Package e2ecluster runs ocisync where its users run it: on a real
// one-node cluster (hack/cluster.sh: kubelet, containerd and runc running
// real Pods), installed from the image of make image and the bundle of make
// build-installer, with nothing but what a user has: kubectl, oras and the
// install bundle. Its assertions are what a user looks at: Pod phases and
// logs, conditions, and the bytes consumer Pods read.
//
// TestMain starts the cluster from the host and runs this test binary again
// inside the cluster's network namespace, where the API server, the
// registries and the Pods are all local addresses; the cluster is stopped
// when the tests end, and by its watchdog if this process is killed.
package e2ecluster

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	clustertest "github.com/ocisync/ocisync/test/cluster"
)

func TestMain(m *testing.M) {
	if _, inside := clustertest.FromEnv(); inside {
		os.Exit(m.Run())
	}
	flag.Parse()
	// go test -run for other packages' tests, or -list: no cluster needed.
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() != "" {
		if re, err := regexp.Compile(f.Value.String()); err == nil && !re.MatchString("TestCluster") {
			os.Exit(m.Run())
		}
	}
	os.Exit(runOnCluster())
}

// runOnCluster starts a cluster, runs the tests inside it and stops it.
func runOnCluster() int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := clustertest.Up(ctx, clustertest.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e-cluster: starting the test cluster failed: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e-cluster: cluster %s up in %.1fs (state %s)\n", c.Name, c.Started.Seconds(), c.State)
	start := time.Now()
	code, err := c.RunInside(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e-cluster: %v\n", err)
		code = 1
	}
	fmt.Fprintf(os.Stderr, "e2e-cluster: suite ran in %.1fs\n", time.Since(start).Seconds())
	stop := time.Now()
	if err := c.Down(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e-cluster: stopping the test cluster failed: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e-cluster: cluster down in %.1fs\n", time.Since(stop).Seconds())
	return code
}

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ocisync on a one-node cluster")
}
