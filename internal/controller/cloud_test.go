package controller

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ocisync/ocisync/api/v1alpha1"
	"github.com/ocisync/ocisync/internal/cloudauth"
	"github.com/ocisync/ocisync/internal/cloudauth/cloudtest"
	"github.com/ocisync/ocisync/internal/oci"
	"github.com/ocisync/ocisync/internal/oci/auth"
	"github.com/ocisync/ocisync/internal/oci/transport"
	registrytest "github.com/ocisync/ocisync/test/registry"
)

// suiteCloud is the suite reconciler's Cloud: per-ServiceAccount
// identities allowed, endpoints set by the cloud specs before their first
// Artifact of a provider (the credentials are made on first use).
var suiteCloud = &Cloud{ServiceAccountIdentity: true}

// ecrHost is the ECR registry the cloud registry stands for.
const ecrHost = "123456789012.dkr.ecr.us-west-2.amazonaws.com"

const (
	managerWebToken = "manager-web-identity-token"
	managerRole     = "arn:aws:iam::123456789012:role/ocisync-manager"
	tenantRole      = "arn:aws:iam::123456789012:role/team-puller"
)

// setenv sets the environment variables for the rest of the suite.
func setenv(kv map[string]string) {
	for k, v := range kv {
		old, had := os.LookupEnv(k)
		Expect(os.Setenv(k, v)).To(Succeed())
		DeferCleanup(func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		})
	}
}

var _ = Describe("Artifact with provider aws", Ordered, func() {
	var (
		f        *cloudtest.AWS
		registry *registrytest.Registry
		clock    = &cloudtest.Clock{}
		ns, repo string
		desc     ocispec.Descriptor
		m        ocispec.Manifest
		contents = map[string][]byte{"cloud.txt": []byte("from ECR\n")}
	)

	BeforeAll(func() {
		registry = registrytest.Start(GinkgoT(), registrytest.Options{
			Auth: registrytest.AuthToken, TLS: true,
			Users: []registrytest.User{{Name: "AWS", Password: "not-handed-out-yet"}},
		})
		// STS accepts the manager's web identity token, and the
		// ServiceAccount tokens it is told to; ECR's passwords expire 12
		// hours after the credentials' now, and the registry's token
		// issuer accepts the newest only.
		f = cloudtest.NewAWS(GinkgoT(), ecrHost)
		f.Now = clock.Now
		f.OnPassword = func(pass string) { registry.Tokens.SetPassword("AWS", pass) }
		f.Accept(managerWebToken, managerRole)
		dir := GinkgoT().TempDir()
		tokenFile := filepath.Join(dir, "token")
		Expect(os.WriteFile(tokenFile, []byte(managerWebToken), 0o600)).To(Succeed())
		// What EKS sets in a Pod with IRSA, and no credentials of this
		// machine (its AWS_CA_BUNDLE, if any, stays: it only adds roots).
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
			os.Unsetenv(k)
		}
		setenv(map[string]string{
			"AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile,
			"AWS_ROLE_ARN":                managerRole,
			"AWS_REGION":                  "us-west-2",
			"AWS_ENDPOINT_URL_STS":        f.STS.URL(),
			"AWS_ENDPOINT_URL_ECR":        f.ECR.URL(),
			"AWS_EC2_METADATA_DISABLED":   "true",
			"AWS_CONFIG_FILE":             filepath.Join(dir, "no-config"),
			"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "no-credentials"),
		})
		suiteCloud.mu.Lock()
		suiteCloud.Options = cloudauth.Options{
			HTTPClient:  cloudtest.LoopbackClient(nil),
			Now:         clock.Now,
			HostAliases: map[string]string{registry.Host: ecrHost},
		}
		suiteCloud.mu.Unlock()

		pass := f.Rotate()
		pusher := newPushClient(oci.Options{
			Transport:   transport.Options{CAFile: registry.CAFile},
			Credentials: auth.StaticCredential(registry.Host, auth.Credential{Username: "AWS", Password: pass}),
		})
		repo = "team/cloud"
		desc, m = pushArtifact(pusher, registry.Host, repo, "v1", testArtifactType, textLayer("cloud.txt", "from ECR\n"))
		pushArtifact(pusher, registry.Host, repo+"2", "v1", testArtifactType, textLayer("cloud.txt", "from ECR\n"))
	})

	BeforeEach(func() {
		ns = newNamespace()
		pem, err := os.ReadFile(registry.CAFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(bg, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-ca"},
			Data:       map[string][]byte{"ca.crt": pem},
		})).To(Succeed())
	})

	awsSpec := func() v1alpha1.ArtifactSpec {
		return v1alpha1.ArtifactSpec{
			Reference:     registry.Ref(repo, "v1"),
			Provider:      "aws",
			CertSecretRef: &corev1.LocalObjectReference{Name: "registry-ca"},
			Interval:      every(longInterval),
			ConfigMap:     &v1alpha1.ConfigMapOutput{Name: configMapName},
		}
	}
	resync := func(value string) { GinkgoHelper(); resyncArtifact(ns, value) }

	It("syncs with the manager's identity, renews an expired ECR token, and recovers from a refused one within the sync", func() {
		createArtifact(ns, awsSpec())
		expectPublished(ns, registry.Host, repo, "v1", desc, m, m.Layers, contents)

		By("keeping the ECR token for the next syncs")
		hits := f.ECR.Hits.Load()
		resync("cached")
		Expect(f.ECR.Hits.Load()).To(Equal(hits), "a cached ECR token is used again")

		By("renewing it once it is about to expire")
		clock.Add(12 * time.Hour)
		resync("expired")
		Expect(f.ECR.Hits.Load()).To(Equal(hits+1), "an expired ECR token is renewed")
		Expect(readyMessage(getArtifact(ns))).NotTo(BeEmpty())

		By("recovering within one sync from a token the registry refuses")
		// The manager's ECR token is no longer accepted; another
		// repository needs a registry token, which the token issuer
		// refuses for it.
		f.Rotate()
		hits = f.ECR.Hits.Load()
		readySince := apimeta.FindStatusCondition(getArtifact(ns).Status.Conditions, v1alpha1.ConditionReady).LastTransitionTime
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.Reference = registry.Ref(repo+"2", "v1") })
		Eventually(func() string { return getArtifact(ns).Status.ResolvedReference }).Should(ContainSubstring(repo + "2"))
		a := getArtifact(ns)
		Expect(apimetaReady(a)).To(BeTrue(), "the sync that met the refused token succeeded: %v", a.Status.Conditions)
		Expect(apimeta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady).LastTransitionTime).To(Equal(readySince), "Ready never went False")
		Expect(f.ECR.Hits.Load()).To(Equal(hits+1), "one new ECR token")
		refused := 0
		for _, tr := range registry.Tokens.Requests() {
			if tr.Status == http.StatusUnauthorized {
				refused++
			}
		}
		Expect(refused).To(BeNumerically(">=", 1), "the token issuer refused the old ECR token")

		By("revealing no token in status, events or the log")
		secrets := append([]string{managerWebToken}, f.Passwords()...)
		expectNoCloudSecret(ns, secrets)
	})

	It("reports an ECR outage as RegistryUnavailable and recovers", func() {
		f.SetECRDown(true)
		clock.Add(12 * time.Hour) // the cached token is due for renewal
		expectUnavailable(ns, awsSpec(), "aws", "ECR GetAuthorizationToken", registry.Host)
		f.SetECRDown(false)
		waitReady(ns, desc.Digest)
	})

	It("reports an STS outage as RegistryUnavailable and recovers", func() {
		// A ServiceAccount's role: its credentials are not cached yet, so
		// the sync needs STS.
		Expect(k8sClient.Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sts-outage",
			Annotations: map[string]string{cloudauth.AnnotationAWSRoleARN: tenantRole}}})).To(Succeed())
		f.AllowRole(cloudtest.ServiceAccountSubject(ns, "sts-outage"), tenantRole)
		f.STS.Down()
		spec := awsSpec()
		spec.ServiceAccountName = "sts-outage"
		expectUnavailable(ns, spec, "aws", "STS AssumeRoleWithWebIdentity", registry.Host)
		f.STS.Up()
		waitReady(ns, desc.Digest)
	})

	It("stalls on a registry that is not ECR without sending it anything", func() {
		expectStalledOnForeignHost(ns, awsSpec(), repo)
	})

	It("uses a ServiceAccount's role through TokenRequest, and fails clearly for a role it may not assume", func() {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller",
			Annotations: map[string]string{cloudauth.AnnotationAWSRoleARN: tenantRole}}}
		Expect(k8sClient.Create(bg, sa)).To(Succeed())
		spec := awsSpec()
		spec.ServiceAccountName = "puller"
		createArtifact(ns, spec)
		a := waitFailed(ns, v1alpha1.ReasonAuthenticationFailed, false)
		Expect(readyMessage(a)).To(And(ContainSubstring("STS AssumeRoleWithWebIdentity"), ContainSubstring("ServiceAccount "+ns+"/puller"), ContainSubstring(tenantRole)))

		By("allowing the ServiceAccount the role")
		f.AllowRole(cloudtest.ServiceAccountSubject(ns, "puller"), tenantRole)
		waitReady(ns, desc.Digest)
		Expect(f.Subjects()).To(ContainElement(cloudtest.ServiceAccountSubject(ns, "puller")))

		By("stalling a ServiceAccount whose annotation is no role")
		Expect(k8sClient.Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad",
			Annotations: map[string]string{cloudauth.AnnotationAWSRoleARN: "not-a-role"}}})).To(Succeed())
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.ServiceAccountName = "bad" })
		a = waitFailed(ns, v1alpha1.ReasonInvalidSpec, true)
		Expect(readyMessage(a)).To(ContainSubstring(cloudauth.AnnotationAWSRoleARN))
	})

	It("refuses at admission what cannot work with a cloud provider", func() {
		for _, change := range []func(*v1alpha1.ArtifactSpec){
			func(s *v1alpha1.ArtifactSpec) { s.PullSecrets = []corev1.LocalObjectReference{{Name: "x"}} },
			func(s *v1alpha1.ArtifactSpec) { s.PlainHTTP = true },
			func(s *v1alpha1.ArtifactSpec) {
				s.ConfigMap, s.Volume = nil, &v1alpha1.VolumeOutput{ClaimName: "data"}
			},
		} {
			spec := awsSpec()
			change(&spec)
			err := k8sClient.Create(bg, &v1alpha1.Artifact{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refused"}, Spec: spec})
			Expect(err).To(MatchError(ContainSubstring("provider")))
		}
	})
})

// resyncArtifact asks for a sync of the namespace's Artifact now and
// waits until it ran.
func resyncArtifact(ns, value string) {
	GinkgoHelper()
	a := getArtifact(ns)
	patch := client.MergeFrom(a.DeepCopy())
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	a.Annotations[v1alpha1.AnnotationReconcileRequestedAt] = value
	Expect(k8sClient.Patch(bg, a, patch)).To(Succeed())
	Eventually(func() string { return getArtifact(ns).Status.LastHandledReconcileAt }).Should(Equal(value))
}

func apimetaReady(a *v1alpha1.Artifact) bool {
	c := apimeta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue
}

// expectUnavailable creates an Artifact of spec in ns while an endpoint
// its credentials need is down, and expects RegistryUnavailable (retried,
// not Stalled) with a message naming each of want.
func expectUnavailable(ns string, spec v1alpha1.ArtifactSpec, want ...string) {
	GinkgoHelper()
	createArtifact(ns, spec)
	a := waitFailed(ns, v1alpha1.ReasonRegistryUnavailable, false)
	for _, w := range want {
		Expect(readyMessage(a)).To(ContainSubstring(w))
	}
}

// expectNoCloudSecret fails when a condition or event of the namespace's
// Artifact carries any of the secrets a cloud handed out.
func expectNoCloudSecret(ns string, secrets []string) {
	GinkgoHelper()
	a := getArtifact(ns)
	texts := artifactMessages(a)
	raw, err := json.Marshal(a.Status)
	Expect(err).NotTo(HaveOccurred())
	texts = append(texts, string(raw))
	for _, t := range texts {
		for _, s := range secrets {
			Expect(t).NotTo(ContainSubstring(s), "a message reveals a cloud credential")
			Expect(t).NotTo(ContainSubstring(base64.StdEncoding.EncodeToString([]byte("AWS:" + s))))
		}
	}
}

// cloudFixture is a TLS Distribution registry standing for a cloud
// registry, with an artifact pushed by a user of its own, the CA Secret
// of each spec's namespace, and the cloud credentials' clock.
type cloudFixture struct {
	registry *registrytest.Registry
	clock    *cloudtest.Clock
	repo     string
	desc     ocispec.Descriptor
	m        ocispec.Manifest
	contents map[string][]byte
}

func newCloudFixture(repo, text string) *cloudFixture {
	GinkgoHelper()
	fx := &cloudFixture{clock: &cloudtest.Clock{}, repo: repo, contents: map[string][]byte{"cloud.txt": []byte(text)}}
	fx.registry = registrytest.Start(GinkgoT(), registrytest.Options{
		Auth: registrytest.AuthToken, TLS: true,
		Users: []registrytest.User{{Name: "pusher", Password: "push"}},
	})
	pusher := newPushClient(oci.Options{
		Transport:   transport.Options{CAFile: fx.registry.CAFile},
		Credentials: auth.StaticCredential(fx.registry.Host, auth.Credential{Username: "pusher", Password: "push"}),
	})
	fx.desc, fx.m = pushArtifact(pusher, fx.registry.Host, repo, "v1", testArtifactType, textLayer("cloud.txt", text))
	return fx
}

// namespace makes a namespace with the registry's CA Secret.
func (fx *cloudFixture) namespace() string {
	GinkgoHelper()
	ns := newNamespace()
	pem, err := os.ReadFile(fx.registry.CAFile)
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(bg, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-ca"},
		Data:       map[string][]byte{"ca.crt": pem},
	})).To(Succeed())
	return ns
}

func (fx *cloudFixture) spec(provider string) v1alpha1.ArtifactSpec {
	return v1alpha1.ArtifactSpec{
		Reference:     fx.registry.Ref(fx.repo, "v1"),
		Provider:      provider,
		CertSecretRef: &corev1.LocalObjectReference{Name: "registry-ca"},
		Interval:      every(longInterval),
		ConfigMap:     &v1alpha1.ConfigMapOutput{Name: configMapName},
	}
}

// setCloudOptions sets the suite Cloud's options, which the provider's
// credentials take when its first Artifact makes them.
func setCloudOptions(o cloudauth.Options) {
	suiteCloud.mu.Lock()
	suiteCloud.Options = o
	suiteCloud.mu.Unlock()
}

// unsetenv unsets the environment variables with one of the prefixes for
// the rest of the suite.
func unsetenv(prefixes ...string) {
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				Expect(os.Unsetenv(k)).To(Succeed())
				DeferCleanup(os.Setenv, k, v)
			}
		}
	}
}

// expectStalledOnForeignHost creates an Artifact of provider for a TLS
// registry that the provider does not send credentials to, and expects
// it Stalled with no request sent.
func expectStalledOnForeignHost(ns string, spec v1alpha1.ArtifactSpec, repo string) {
	GinkgoHelper()
	var requests atomic.Int64
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	DeferCleanup(other.Close)
	host := strings.TrimPrefix(other.URL, "https://")
	spec.Reference = host + "/" + repo + ":v1"
	createArtifact(ns, spec)
	a := waitFailed(ns, v1alpha1.ReasonInvalidSpec, true)
	Expect(readyMessage(a)).To(And(ContainSubstring(host), ContainSubstring("sends credentials only to its own registries")))
	Consistently(requests.Load).WithTimeout(time.Second).Should(BeZero(), "no request reached the registry")
}

// gcpUsername is the user name Google's registries take with an access
// token as the password.
const gcpUsername = "oauth2accesstoken"

var _ = Describe("Artifact with provider gcp", Ordered, func() {
	var (
		fx   *cloudFixture
		fake *cloudtest.GCP
		ns   string
	)

	BeforeAll(func() {
		fx = newCloudFixture("team/gcloud", "from Artifact Registry\n")
		fake = cloudtest.NewGCP(GinkgoT())
		fake.Impersonable = "puller@" + cloudtest.GCPProject + ".iam.gserviceaccount.com"
		// The registry accepts the newest access token handed out only.
		fake.OnToken = func(tok string) { fx.registry.Tokens.SetPassword(gcpUsername, tok) }
		// Tokens live an hour on the credentials' clock.
		fake.ExpiresIn = func() time.Duration { return time.Until(fx.clock.Now().Add(time.Hour)) }
		// The metadata server is found through the environment only (the
		// Google libraries have no option for it); nothing of this
		// machine's Google configuration, whose Application Default
		// Credentials the libraries look for under $HOME.
		unsetenv("GOOGLE_", "CLOUDSDK_")
		setenv(map[string]string{
			"GCE_METADATA_HOST": fake.MetadataHost(),
			"CLOUDSDK_CONFIG":   GinkgoT().TempDir(),
			"HOME":              GinkgoT().TempDir(),
		})
		setCloudOptions(cloudauth.Options{
			HTTPClient:              cloudtest.LoopbackClient(nil),
			Now:                     fx.clock.Now,
			HostAliases:             map[string]string{fx.registry.Host: "us-central1-docker.pkg.dev"},
			GoogleSTSURL:            fake.STSURL(),
			GoogleIAMCredentialsURL: fake.IAM.URL(),
		})
	})

	BeforeEach(func() { ns = fx.namespace() })

	It("syncs with the manager's identity from the metadata server and renews its access token", func() {
		createArtifact(ns, fx.spec("gcp"))
		expectPublished(ns, fx.registry.Host, fx.repo, "v1", fx.desc, fx.m, fx.m.Layers, fx.contents)
		Expect(fake.Tokens()).NotTo(BeEmpty())

		By("keeping the access token for the next syncs")
		n := len(fake.Tokens())
		resyncArtifact(ns, "cached")
		Expect(fake.Tokens()).To(HaveLen(n), "a cached access token is used again")

		By("renewing it once it is about to expire")
		fx.clock.Add(time.Hour)
		resyncArtifact(ns, "expired")
		Expect(fake.Tokens()).To(HaveLen(n+1), "an expired access token is renewed")
		Expect(apimetaReady(getArtifact(ns))).To(BeTrue())
		expectNoCloudSecret(ns, fake.Tokens())
	})

	It("fails clearly without an identity on the metadata server, and recovers", func() {
		fake.SetNoIdentity(true)
		fx.clock.Add(time.Hour)
		createArtifact(ns, fx.spec("gcp"))
		a := waitFailed(ns, v1alpha1.ReasonAuthenticationFailed, false)
		Expect(readyMessage(a)).To(And(ContainSubstring("gcp"), ContainSubstring("Application Default Credentials"), ContainSubstring(fx.registry.Host)))
		fake.SetNoIdentity(false)
		waitReady(ns, fx.desc.Digest)
	})

	It("reports a metadata server outage as RegistryUnavailable and recovers", func() {
		fake.MD.Down()
		fx.clock.Add(time.Hour)
		expectUnavailable(ns, fx.spec("gcp"), "gcp", "Application Default Credentials", fx.registry.Host)
		fake.MD.Up()
		waitReady(ns, fx.desc.Digest)
	})

	It("stalls on a registry that is not Google's without sending it anything", func() {
		expectStalledOnForeignHost(ns, fx.spec("gcp"), fx.repo)
	})

	It("uses a ServiceAccount's federated identity through TokenRequest, and fails clearly for one not federated", func() {
		Expect(k8sClient.Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller"}})).To(Succeed())
		spec := fx.spec("gcp")
		spec.ServiceAccountName = "puller"
		createArtifact(ns, spec)
		a := waitFailed(ns, v1alpha1.ReasonAuthenticationFailed, false)
		Expect(readyMessage(a)).To(And(ContainSubstring("STS token exchange for ServiceAccount "+ns+"/puller"), ContainSubstring("invalid_grant")))

		By("federating the ServiceAccount")
		fake.Federate(cloudtest.ServiceAccountSubject(ns, "puller"))
		waitReady(ns, fx.desc.Digest)
		Expect(fake.Tokens()).To(ContainElement(HavePrefix("federated-")))

		By("impersonating the IAM service account it is annotated with")
		Expect(k8sClient.Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "impersonator",
			Annotations: map[string]string{cloudauth.AnnotationGCPServiceAccount: fake.Impersonable}}})).To(Succeed())
		fake.Federate(cloudtest.ServiceAccountSubject(ns, "impersonator"))
		updateSpec(ns, func(s *v1alpha1.ArtifactSpec) { s.ServiceAccountName = "impersonator" })
		Eventually(fake.Tokens).Should(ContainElement(HavePrefix("impersonated-")))
		waitReady(ns, fx.desc.Digest)
		expectNoCloudSecret(ns, fake.Tokens())
	})
})

// acrUsername is the user name ACR takes with a refresh token.
const acrUsername = "00000000-0000-0000-0000-000000000000"

var _ = Describe("Artifact with provider azure", Ordered, func() {
	const (
		acrHost       = "myregistry.azurecr.io"
		tenant        = "72f988bf-86f1-41af-91ab-2d7cd011db47"
		managerClient = "11111111-2222-3333-4444-555555555555"
		tenantClient  = "99999999-2222-3333-4444-555555555555"
	)
	var (
		fx         *cloudFixture
		fake       *cloudtest.Azure
		ns         string
		managerJWT = cloudtest.FakeJWT(map[string]any{
			"sub": cloudtest.ServiceAccountSubject("ocisync-system", "ocisync-manager"),
			"aud": cloudtest.AzureAssertionAudience,
		})
	)

	BeforeAll(func() {
		fx = newCloudFixture("team/azure", "from ACR\n")
		fake = cloudtest.NewAzure(GinkgoT(), acrHost)
		// Each refresh token the exchange hands out is the only one the
		// registry accepts, valid for 3 hours on the credentials' clock.
		var n atomic.Int64
		fake.NewRefreshToken = func() string {
			tok := cloudtest.FakeJWT(map[string]any{"exp": fx.clock.Now().Add(3 * time.Hour).Unix(), "n": n.Add(1)})
			fx.registry.Tokens.SetRefreshToken(acrUsername, tok)
			return tok
		}
		fake.Federate(managerClient, cloudtest.ServiceAccountSubject("ocisync-system", "ocisync-manager"))
		tokenFile := filepath.Join(GinkgoT().TempDir(), "azure-identity-token")
		Expect(os.WriteFile(tokenFile, []byte(managerJWT), 0o600)).To(Succeed())
		// What Azure Workload Identity sets in the manager's Pod, through
		// Options.Getenv: the process environment keeps none of it, and
		// nothing of this machine's.
		unsetenv("AZURE_", "IDENTITY_", "IMDS_", "MSI_")
		env := map[string]string{
			"AZURE_AUTHORITY_HOST":       fake.AuthorityHost(),
			"AZURE_FEDERATED_TOKEN_FILE": tokenFile,
			"AZURE_CLIENT_ID":            managerClient,
			"AZURE_TENANT_ID":            tenant,
		}
		setCloudOptions(cloudauth.Options{
			Getenv:                        func(k string) string { return env[k] },
			HTTPClient:                    cloudtest.LoopbackClient(fake.Pool),
			Now:                           fx.clock.Now,
			HostAliases:                   map[string]string{fx.registry.Host: acrHost},
			ACRExchangeURL:                func(string) string { return fake.ExchangeURL() },
			AzureDisableInstanceDiscovery: true,
		})
	})

	BeforeEach(func() { ns = fx.namespace() })

	It("syncs with the manager's workload identity through the ACR exchange and renews the refresh token", func() {
		createArtifact(ns, fx.spec("azure"))
		expectPublished(ns, fx.registry.Host, fx.repo, "v1", fx.desc, fx.m, fx.m.Layers, fx.contents)
		Expect(fake.RefreshTokens()).To(HaveLen(1))

		By("keeping the refresh token for the next syncs")
		resyncArtifact(ns, "cached")
		Expect(fake.RefreshTokens()).To(HaveLen(1), "a cached refresh token is used again")

		By("renewing it once it is about to expire")
		fx.clock.Add(3 * time.Hour)
		resyncArtifact(ns, "expired")
		Expect(fake.RefreshTokens()).To(HaveLen(2), "an expired refresh token is renewed")
		Expect(apimetaReady(getArtifact(ns))).To(BeTrue())
		expectNoCloudSecret(ns, append(fake.RefreshTokens(), managerJWT))
	})

	It("reports an ACR exchange outage as RegistryUnavailable and recovers", func() {
		fake.ACR.Down()
		fx.clock.Add(3 * time.Hour)
		expectUnavailable(ns, fx.spec("azure"), "azure", "ACR token exchange", fx.registry.Host)
		fake.ACR.Up()
		waitReady(ns, fx.desc.Digest)
	})

	It("reports an Entra ID outage as RegistryUnavailable and recovers", func() {
		// A ServiceAccount's client: no Entra ID token of it is cached
		// yet, so the sync needs Entra ID.
		const outageClient = "aaaaaaaa-2222-3333-4444-555555555555"
		Expect(k8sClient.Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "aad-outage",
			Annotations: map[string]string{cloudauth.AnnotationAzureClientID: outageClient}}})).To(Succeed())
		fake.Federate(outageClient, cloudtest.ServiceAccountSubject(ns, "aad-outage"))
		fake.AAD.Down()
		exchanges := fake.ACR.Hits.Load()
		spec := fx.spec("azure")
		spec.ServiceAccountName = "aad-outage"
		expectUnavailable(ns, spec, "azure", "Entra ID token of ServiceAccount "+ns+"/aad-outage", fx.registry.Host)
		Expect(fake.ACR.Hits.Load()).To(Equal(exchanges), "no exchange without an Entra ID token")
		fake.AAD.Up()
		waitReady(ns, fx.desc.Digest)
	})

	It("stalls on a registry that is not ACR without sending it anything", func() {
		expectStalledOnForeignHost(ns, fx.spec("azure"), fx.repo)
	})

	It("uses a ServiceAccount's client through TokenRequest, and fails clearly for one not federated", func() {
		Expect(k8sClient.Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller",
			Annotations: map[string]string{cloudauth.AnnotationAzureClientID: tenantClient}}})).To(Succeed())
		spec := fx.spec("azure")
		spec.ServiceAccountName = "puller"
		createArtifact(ns, spec)
		a := waitFailed(ns, v1alpha1.ReasonAuthenticationFailed, false)
		Expect(readyMessage(a)).To(And(ContainSubstring("Entra ID token of ServiceAccount "+ns+"/puller"), ContainSubstring("AADSTS700211"), ContainSubstring(fx.registry.Host)))

		By("federating the ServiceAccount with the client")
		fake.Federate(tenantClient, cloudtest.ServiceAccountSubject(ns, "puller"))
		waitReady(ns, fx.desc.Digest)
		expectNoCloudSecret(ns, fake.RefreshTokens())
	})
})
