package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
)

// artifactState is what the demo reports about an Artifact when it
// changes.
type artifactState struct {
	ready, reason, message, digest string
	current                        bool // status is for the current generation
}

func (s artifactState) isReady() bool { return s.current && s.ready == string(metav1.ConditionTrue) }

func (d *demo) artifactState(ctx context.Context, key client.ObjectKey) (artifactState, error) {
	art := &ocisyncv1alpha1.Artifact{}
	if err := d.k8s.Get(ctx, key, art); err != nil {
		return artifactState{}, fmt.Errorf("reading Artifact %s: %w", key, err)
	}
	s := artifactState{digest: art.Status.Digest, current: art.Status.ObservedGeneration == art.Generation}
	if c := apimeta.FindStatusCondition(art.Status.Conditions, ocisyncv1alpha1.ConditionReady); c != nil {
		s.ready, s.reason, s.message = string(c.Status), c.Reason, c.Message
	}
	return s, nil
}

// report prints s when it differs from what was last printed for key.
func (d *demo) report(key client.ObjectKey, last map[client.ObjectKey]artifactState, s artifactState) (changed bool) {
	prev, ok := last[key]
	if ok && prev == s {
		return false
	}
	last[key] = s
	if s.ready == "" {
		d.info("artifact/%s: not reconciled yet", key.Name)
		return true
	}
	line := fmt.Sprintf("artifact/%s: Ready=%s %s", key.Name, s.ready, s.reason)
	switch {
	case s.isReady() && prev.digest != "" && prev.digest != s.digest:
		line = fmt.Sprintf("artifact/%s: synced the new digest %s", key.Name, s.digest)
	case s.ready == string(metav1.ConditionTrue):
		line += " " + s.digest
	case s.message != "":
		line += ": " + s.message
	}
	d.info("%s", line)
	return true
}

// waitReady waits until every Artifact is Ready for its current
// generation, printing each change of state on the way.
func (d *demo) waitReady(ctx context.Context) error {
	d.step("Waiting for %d Artifact(s) to become Ready", len(d.artifacts))
	start := time.Now()
	deadline := start.Add(d.opts.readyTimeout)
	last := map[client.ObjectKey]artifactState{}
	for {
		all := true
		for _, key := range d.artifacts {
			s, err := d.artifactState(ctx, key)
			if err != nil {
				return err
			}
			d.report(key, last, s)
			all = all && s.isReady()
		}
		if all {
			d.info("Ready after %s", time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Artifacts are not Ready after %s (see their state above)%s", d.opts.readyTimeout, d.managerLogTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.managerDone:
			return fmt.Errorf("the manager exited%s", d.managerLogTail())
		case <-time.After(poll):
		}
	}
}

// show prints the Artifacts and their ConfigMaps, as kubectl would.
func (d *demo) show(ctx context.Context) error {
	fmt.Fprintln(d.out)
	if err := d.printArtifacts(ctx); err != nil {
		return err
	}
	for _, key := range d.artifacts {
		fmt.Fprintln(d.out)
		if err := d.printConfigMapOf(ctx, key); err != nil {
			return err
		}
	}
	fmt.Fprintln(d.out)
	return nil
}

// printConfigMapOf prints the ConfigMap output of the Artifact key, if it
// has one.
func (d *demo) printConfigMapOf(ctx context.Context, key client.ObjectKey) error {
	art := &ocisyncv1alpha1.Artifact{}
	if err := d.k8s.Get(ctx, key, art); err != nil {
		return fmt.Errorf("reading Artifact %s: %w", key, err)
	}
	if art.Spec.ConfigMap == nil {
		return nil
	}
	return d.printConfigMap(ctx, client.ObjectKey{Namespace: key.Namespace, Name: art.Spec.ConfigMap.Name})
}

// printTry prints what to try while the demo runs.
func (d *demo) printTry(ctx context.Context) {
	w := bufio.NewWriter(d.out)
	defer w.Flush()
	cm := "app-config"
	if len(d.artifacts) > 0 {
		art := &ocisyncv1alpha1.Artifact{}
		if err := d.k8s.Get(ctx, d.artifacts[0], art); err == nil && art.Spec.ConfigMap != nil {
			cm = art.Spec.ConfigMap.Name
		}
	}
	app, _, _ := strings.Cut(d.files[0], ":")
	fmt.Fprintf(w, "Try it from another terminal in %s:\n\n", mustGetwd())
	fmt.Fprintf(w, "  export KUBECONFIG=%s\n", shellQuote(d.kubeconfig))
	fmt.Fprintf(w, "  kubectl get artifacts -o wide\n")
	fmt.Fprintf(w, "  kubectl get configmap %s -o yaml -w\n\n", cm)
	fmt.Fprintf(w, "Publish a new version (the Artifact checks its tag every %s; this demo prints each sync):\n\n", d.opts.interval)
	fmt.Fprintf(w, "  echo 'color: blue' >> %s\n", shellQuote(app))
	fmt.Fprintf(w, "  %s\n\n", shellJoin(d.pushCommand()))
	fmt.Fprintf(w, "Manager log: %s\nMetrics: curl -s http://%s/metrics\n\n", d.managerLog, d.metricsAddr)
}

// follow prints every change of the Artifacts, and the ConfigMap of each
// new sync, until ctx ends.
func (d *demo) follow(ctx context.Context) error {
	last := map[client.ObjectKey]artifactState{}
	for _, key := range d.artifacts {
		s, err := d.artifactState(ctx, key)
		if err != nil {
			return err
		}
		last[key] = s
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.managerDone:
			return fmt.Errorf("the manager exited%s", d.managerLogTail())
		case <-time.After(poll):
		}
		for _, key := range d.artifacts {
			s, err := d.artifactState(ctx, key)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			prev := last[key]
			if d.report(key, last, s) && s.isReady() && s.digest != prev.digest {
				if err := d.printConfigMapOf(ctx, key); err != nil && ctx.Err() == nil {
					return err
				}
			}
		}
	}
}
