package install

import (
	"os"
	"path/filepath"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestCRDFieldsDocumented: kubectl explain shows a field's description,
// which controller-gen takes from the Go doc comment. Every field of spec
// and status must have one.
func TestCRDFieldsDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "crd", "bases", "ocisync.io_artifacts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) == 0 || crd.Spec.Versions[0].Schema == nil {
		t.Fatal("the CRD has no schema")
	}
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	checked := 0
	var walk func(path string, s *apiextensionsv1.JSONSchemaProps)
	walk = func(path string, s *apiextensionsv1.JSONSchemaProps) {
		for name, p := range s.Properties {
			if p.Description == "" {
				t.Errorf("%s.%s has no description: give its Go field a doc comment and run make manifests", path, name)
			}
			checked++
			walk(path+"."+name, &p)
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(path+"[]", s.Items.Schema)
		}
	}
	for _, top := range []string{"spec", "status"} {
		p, ok := root.Properties[top]
		if !ok {
			t.Fatalf("the CRD has no %s", top)
		}
		walk(top, &p)
	}
	if checked < 30 {
		t.Errorf("only %d fields checked; the walk is broken", checked)
	}
}
