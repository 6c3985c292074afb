package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/cloudauth"
	"github.com/ocisync/ocisync/internal/oci"
)

func TestClassifyCloudErrors(t *testing.T) {
	refused := cloudauth.CheckHost(cloudauth.AWS, "registry.example.com")
	_, unsupported := cloudauth.NewIdentity(cloudauth.Azure, "team", "puller", nil, nil)
	for _, tt := range []struct {
		err    error
		reason string
		stall  bool
	}{
		{refused, v1alpha1.ReasonInvalidSpec, true},
		{fmt.Errorf("looking up credentials for h: %w", unsupported), v1alpha1.ReasonInvalidSpec, true},
		{fmt.Errorf("looking up credentials for h: %w", &cloudauth.Error{Provider: cloudauth.GCP, Host: "gcr.io", Step: "STS", Kind: cloudauth.ErrAuthFailed, Err: errors.New("invalid_grant")}), v1alpha1.ReasonAuthenticationFailed, false},
		{fmt.Errorf("x: %w", &cloudauth.Error{Provider: cloudauth.AWS, Host: "h", Step: "ECR", Kind: cloudauth.ErrUnavailable, Err: errors.New("503")}), v1alpha1.ReasonRegistryUnavailable, false},
		// A registry's own 401 stays the registry's.
		{fmt.Errorf("x: %w", oci.ErrUnauthorized), v1alpha1.ReasonAuthenticationFailed, false},
	} {
		if unsupported == nil || refused == nil {
			t.Fatal("no error to classify")
		}
		se := classify(tt.err)
		if se.reason != tt.reason || se.stall != tt.stall {
			t.Errorf("classify(%v) = %s stall=%v, want %s stall=%v", tt.err, se.reason, se.stall, tt.reason, tt.stall)
		}
	}
}

// TestCloudRefusals: what cannot work with a cloud provider is Stalled
// with InvalidSpec before any request, whatever got past admission.
func TestCloudRefusals(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "puller"}}
	r := &ArtifactReconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(sa).Build()}
	base := func() *v1alpha1.Artifact {
		return &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "a"}, Spec: v1alpha1.ArtifactSpec{
			Reference: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/config:v1", Provider: "aws",
		}}
	}
	for _, tt := range []struct {
		name   string
		change func(*v1alpha1.Artifact)
		want   string
	}{
		{"pull secrets", func(a *v1alpha1.Artifact) { a.Spec.PullSecrets = []corev1.LocalObjectReference{{Name: "s"}} }, "pullSecrets are for provider generic"},
		{"plain HTTP", func(a *v1alpha1.Artifact) { a.Spec.PlainHTTP = true }, "HTTPS only"},
		{"volume", func(a *v1alpha1.Artifact) { a.Spec.Volume = &v1alpha1.VolumeOutput{ClaimName: "c"} }, "sync Jobs cannot carry"},
		{"another registry", func(a *v1alpha1.Artifact) { a.Spec.Reference = "ghcr.io/org/config:v1" }, `registry host "ghcr.io" is not an Amazon ECR host`},
		{"gcp on ECR", func(a *v1alpha1.Artifact) { a.Spec.Provider = "gcp" }, "is not a Google Artifact Registry"},
		{"azure on ECR", func(a *v1alpha1.Artifact) { a.Spec.Provider = "azure" }, "is not an Azure Container Registry host"},
		{"unknown provider", func(a *v1alpha1.Artifact) { a.Spec.Provider = "oracle" }, `provider "oracle" is not one of`},
		{"ServiceAccount identity off", func(a *v1alpha1.Artifact) { a.Spec.ServiceAccountName = "puller" }, "--cloud-service-account-identity"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := base()
			tt.change(a)
			_, _, err := r.registryClient(context.Background(), a)
			se := classify(err)
			if err == nil || !se.stall || se.reason != v1alpha1.ReasonInvalidSpec || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v (%s stall=%v), want Stalled InvalidSpec with %q", err, se.reason, se.stall, tt.want)
			}
		})
	}
}

// TestCloudIdentityAnnotations: a ServiceAccount's cloud annotations
// survive the trim of the ServiceAccount cache; nothing else does.
func TestCloudIdentityAnnotations(t *testing.T) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "s", Annotations: map[string]string{
		cloudauth.AnnotationAWSRoleARN:        "arn:aws:iam::123456789012:role/r",
		cloudauth.AnnotationAzureClientID:     "c",
		corev1.LastAppliedConfigAnnotation:    "{huge}",
		cloudauth.AnnotationGCPServiceAccount: "g",
		cloudauth.AnnotationAzureTenantID:     "t",
		"example.com/unrelated":               "x",
	}}}
	got := newAccountCache().trim(sa).Annotations
	if len(got) != 4 || got[cloudauth.AnnotationAWSRoleARN] == "" || got[corev1.LastAppliedConfigAnnotation] != "" {
		t.Fatalf("trimmed annotations %v", got)
	}
}
