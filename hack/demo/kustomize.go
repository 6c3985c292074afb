package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomization.yaml the demo understands:
// a list of resources, which is all config/crd and config/samples use.
// Anything else is refused rather than silently left out.
type kustomization struct {
	APIVersion string   `json:"apiVersion,omitempty"`
	Kind       string   `json:"kind,omitempty"`
	Resources  []string `json:"resources,omitempty"`
}

// readKustomization returns the objects of the kustomization in dir, in
// the order of its resources, as `kubectl kustomize dir` would for one
// that only lists resources (files, or folders with their own
// kustomization).
func readKustomization(dir string) ([]*unstructured.Unstructured, error) {
	path := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: run make demo from the repository's root folder, or point --config-dir at its config folder", path)
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %v; the demo reads only apiVersion, kind and resources (apply it with kubectl apply -k instead)", path, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range k.Resources {
		if strings.Contains(r, "://") || filepath.IsAbs(r) {
			return nil, fmt.Errorf("%s: resource %q is not a relative path, which is all the demo reads", path, r)
		}
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %q: %w", path, r, err)
		}
		var more []*unstructured.Unstructured
		if st.IsDir() {
			more, err = readKustomization(p)
		} else {
			more, err = readObjects(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	return objs, nil
}

// readObjects decodes every object of a YAML (or JSON) file of one or more
// documents.
func readObjects(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := map[string]any{}
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(obj) == 0 {
			continue // an empty document, e.g. after a trailing ---
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s: an object without apiVersion, kind or metadata.name", path)
		}
		objs = append(objs, u)
	}
}
