package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	ocisyncv1alpha1 "github.com/ocisync/ocisync/api/v1alpha1"
)

// printArtifacts prints `kubectl get artifacts -o wide`, run by kubectl
// when there is one, else from the same server-side table kubectl prints.
func (d *demo) printArtifacts(ctx context.Context) error {
	fmt.Fprintln(d.out, "$ kubectl get artifacts -o wide")
	if d.kubectl != "" {
		return d.runKubectl(ctx, "get", "artifacts", "-o", "wide")
	}
	table, err := d.artifactTable(ctx)
	if err != nil {
		return err
	}
	return printTable(d.out, table)
}

// printConfigMap prints `kubectl get configmap NAME -o yaml`.
func (d *demo) printConfigMap(ctx context.Context, key client.ObjectKey) error {
	fmt.Fprintf(d.out, "$ kubectl get configmap %s -o yaml\n", key.Name)
	if d.kubectl != "" {
		return d.runKubectl(ctx, "get", "configmap", key.Name, "--namespace", key.Namespace, "-o", "yaml")
	}
	cm := &corev1.ConfigMap{}
	if err := d.k8s.Get(ctx, key, cm); err != nil {
		return fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	// As kubectl shows it: with its kind, without managedFields.
	cm.APIVersion, cm.Kind = "v1", "ConfigMap"
	cm.ManagedFields = nil
	out, err := yaml.Marshal(cm)
	if err != nil {
		return fmt.Errorf("encoding ConfigMap %s: %w", key, err)
	}
	_, err = d.out.Write(out)
	return err
}

// runKubectl runs kubectl with the demo's kubeconfig, its output going to
// the demo's.
func (d *demo) runKubectl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, d.kubectl, args...)
	cmd.Env = d.toolEnv()
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.SysProcAttr = ownProcessGroup()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s failed: %v", d.kubectl, strings.Join(args, " "), err)
	}
	return nil
}

// artifactTable asks the API server for the Artifacts of the default
// namespace as a Table: the columns the CRD declares, the cells the server
// computes, what kubectl prints.
func (d *demo) artifactTable(ctx context.Context) (*metav1.Table, error) {
	hc, err := rest.HTTPClientFor(d.cfg)
	if err != nil {
		return nil, err
	}
	gv := ocisyncv1alpha1.GroupVersion
	url := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/artifacts", strings.TrimSuffix(d.cfg.Host, "/"), gv.Group, gv.Version, metav1.NamespaceDefault)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing the Artifacts: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("listing the Artifacts: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing the Artifacts: the API server answered %s: %s", resp.Status, body)
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(body, table); err != nil {
		return nil, fmt.Errorf("decoding the Artifacts table: %w", err)
	}
	return table, nil
}

// printTable prints every column of table (as -o wide does) the way
// kubectl's table printer does.
func printTable(out io.Writer, table *metav1.Table) error {
	tw := tabwriter.NewWriter(out, 6, 4, 3, ' ', 0)
	headers := make([]string, len(table.ColumnDefinitions))
	for i, c := range table.ColumnDefinitions {
		headers[i] = strings.ToUpper(c.Name)
	}
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, row := range table.Rows {
		cells := make([]string, len(row.Cells))
		for i, c := range row.Cells {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// cell formats one table cell: empty when unset, and text cut at its first
// line break, as kubectl shows them.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		if i := strings.IndexAny(v, "\n\r\f"); i >= 0 {
			return v[:i] + "..."
		}
		return v
	default:
		return fmt.Sprint(v)
	}
}

// shellSafe matches words that need no quoting in a POSIX shell.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin is args as a command line to paste into a POSIX shell.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
