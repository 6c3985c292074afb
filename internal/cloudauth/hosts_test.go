package cloudauth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisync/ocisync/internal/cloudauth/cloudtest"
	"github.com/ocisync/ocisync/internal/oci/auth"
)

func TestCheckHost(t *testing.T) {
	ok := map[Provider][]string{
		AWS: {
			"123456789012.dkr.ecr.us-west-2.amazonaws.com",
			"123456789012.dkr.ecr.us-west-2.amazonaws.com:443",
			"123456789012.DKR.ECR.eu-central-1.AMAZONAWS.COM",
			"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
			"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
			"123456789012.dkr-ecr.us-east-1.on.aws",
			"123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
			"public.ecr.aws",
		},
		GCP: {
			"us-central1-docker.pkg.dev",
			"europe-docker.pkg.dev",
			"gcr.io",
			"eu.gcr.io",
			"gcr.io:443",
		},
		Azure: {
			"myregistry.azurecr.io",
			"myregistry-abc123.azurecr.io",
			"MyRegistry.AzureCR.io",
			"myregistry.azurecr.cn",
			"myregistry.azurecr.us",
		},
	}
	refused := map[Provider][]string{
		AWS: {
			"",
			"12345678901.dkr.ecr.us-west-2.amazonaws.com", // 11 digits
			"123456789012.dkr.ecr.us-west-2.amazonaws.com.evil.com",
			"123456789012.dkr.ecr.us-west-2.amazonaws.com:5000",
			"evil.com/123456789012.dkr.ecr.us-west-2.amazonaws.com",
			"user@123456789012.dkr.ecr.us-west-2.amazonaws.com",
			"x.123456789012.dkr.ecr.us-west-2.amazonaws.com",
			"public.ecr.aws.evil.com",
			"ecr.aws",
			"myregistry.azurecr.io",
			"gcr.io",
			"127.0.0.1:5000",
			"[::1]:443",
		},
		GCP: {
			"docker.pkg.dev",
			"us-central1-docker.pkg.dev.evil.com",
			"evilgcr.io",
			"a.b.gcr.io",
			"gcr.io:5000",
			"us-central1-maven.pkg.dev",
			"123456789012.dkr.ecr.us-west-2.amazonaws.com",
			"gcr.io/evil",
		},
		Azure: {
			"azurecr.io",
			".azurecr.io",
			"x.azurecr.io.evil.com",
			"a.b.azurecr.io",
			"myregistry.azurecr.de",
			"myregistry.azurecr.io:8443",
			"myregistry.westeurope.data.azurecr.io",
			"evil.com/myregistry.azurecr.io",
			"gcr.io",
		},
	}
	for p, hosts := range ok {
		for _, h := range hosts {
			if err := CheckHost(p, h); err != nil {
				t.Errorf("CheckHost(%s, %q) = %v, want nil", p, h, err)
			}
		}
	}
	for p, hosts := range refused {
		for _, h := range hosts {
			err := CheckHost(p, h)
			mustClass(t, err, ErrHostRefused, []string{string(p) + ": host check", "provider " + string(p)})
			if h != "" && !strings.Contains(err.Error(), `"`+h+`"`) {
				t.Errorf("CheckHost(%s, %q) = %v; does not name the host", p, h, err)
			}
		}
	}
	for _, h := range []string{"anything.example:5000", "127.0.0.1"} {
		if err := CheckHost(Generic, h); err != nil {
			t.Errorf("generic refused %q: %v", h, err)
		}
	}
	if err := CheckHost("oracle", "x"); err == nil {
		t.Error("unknown provider accepted")
	}
}

func TestParseECRHost(t *testing.T) {
	for host, want := range map[string]ECRRegistry{
		"123456789012.dkr.ecr.us-west-2.amazonaws.com":          {Account: "123456789012", Region: "us-west-2"},
		"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com": {Account: "123456789012", Region: "us-gov-west-1", FIPS: true},
		"210987654321.dkr.ecr.cn-northwest-1.amazonaws.com.cn":  {Account: "210987654321", Region: "cn-northwest-1"},
		"public.ecr.aws": {Public: true, Region: "us-east-1"},
	} {
		got, err := ParseECRHost(host)
		if err != nil || got != want {
			t.Errorf("ParseECRHost(%q) = %+v, %v; want %+v", host, got, err, want)
		}
	}
}

func TestParseProvider(t *testing.T) {
	for in, want := range map[string]Provider{"": Generic, "generic": Generic, "aws": AWS, "gcp": GCP, "azure": Azure} {
		if got, err := ParseProvider(in); err != nil || got != want {
			t.Errorf("ParseProvider(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseProvider("AWS"); err == nil {
		t.Error("ParseProvider accepted AWS")
	}
}

func TestNewIdentity(t *testing.T) {
	tok := func(context.Context, string) (string, error) { return "", nil }
	cases := []struct {
		p       Provider
		ann     map[string]string
		refused string // substring of the refusal; empty: accepted
		key     string // substring of the String()
	}{
		{AWS, map[string]string{AnnotationAWSRoleARN: "arn:aws:iam::123456789012:role/puller"}, "", "role arn:aws:iam::123456789012:role/puller"},
		{AWS, map[string]string{AnnotationAWSRoleARN: "arn:aws-cn:iam::123456789012:role/path/puller"}, "", "role"},
		{AWS, nil, "", "ServiceAccount team-a/puller"}, // EKS Pod Identity
		{AWS, map[string]string{AnnotationAWSRoleARN: "puller"}, "not an IAM role ARN", ""},
		{AWS, map[string]string{AnnotationAWSRoleARN: "arn:aws:iam::123456789012:user/bob"}, "not an IAM role ARN", ""},
		{Azure, map[string]string{AnnotationAzureClientID: "11111111-2222-3333-4444-555555555555"}, "", "client 11111111"},
		{Azure, map[string]string{AnnotationAzureClientID: "11111111-2222-3333-4444-555555555555", AnnotationAzureTenantID: "66666666-2222-3333-4444-555555555555"}, "", "client"},
		{Azure, nil, "annotation azure.workload.identity/client-id is missing", ""},
		{Azure, map[string]string{AnnotationAzureClientID: "me"}, "not a client ID", ""},
		{Azure, map[string]string{AnnotationAzureClientID: "11111111-2222-3333-4444-555555555555", AnnotationAzureTenantID: "x"}, "not a tenant ID", ""},
		{GCP, nil, "", "ServiceAccount team-a/puller"},
		{GCP, map[string]string{AnnotationGCPServiceAccount: "puller@my-project.iam.gserviceaccount.com"}, "", "service account puller@"},
		{GCP, map[string]string{AnnotationGCPServiceAccount: "puller@gmail.com"}, "not an IAM service account", ""},
		{Generic, nil, "has no cloud identity", ""},
	}
	for _, c := range cases {
		id, err := NewIdentity(c.p, "team-a", "puller", c.ann, tok)
		if c.refused != "" {
			mustClass(t, err, ErrUnsupported, []string{c.refused, "team-a/puller"})
			continue
		}
		if err != nil {
			t.Errorf("NewIdentity(%s, %v): %v", c.p, c.ann, err)
			continue
		}
		if !strings.Contains(id.String(), c.key) {
			t.Errorf("NewIdentity(%s, %v).String() = %q, want %q in it", c.p, c.ann, id, c.key)
		}
	}
	a, _ := NewIdentity(AWS, "ns", "sa", map[string]string{AnnotationAWSRoleARN: "arn:aws:iam::123456789012:role/a"}, tok)
	b, _ := NewIdentity(AWS, "ns", "sa", map[string]string{AnnotationAWSRoleARN: "arn:aws:iam::123456789012:role/b"}, tok)
	c, _ := NewIdentity(AWS, "ns", "other", map[string]string{AnnotationAWSRoleARN: "arn:aws:iam::123456789012:role/a"}, tok)
	if a.key() == b.key() || a.key() == c.key() || a.key() == (*Identity)(nil).key() {
		t.Error("cache keys of different ServiceAccounts or roles collide")
	}
}

func TestCacheRenewsBeforeExpiry(t *testing.T) {
	clock := &cloudtest.Clock{}
	c := newCache(clock.Now)
	var n atomic.Int64
	fetch := func(context.Context) (auth.Credential, time.Time, error) {
		i := n.Add(1)
		return auth.Credential{Password: string(rune('0' + i))}, clock.Now().Add(12 * time.Hour), nil
	}
	ctx := context.Background()
	get := func() string {
		cred, err := c.get(ctx, "k", fetch)
		if err != nil {
			t.Fatal(err)
		}
		return cred.Password
	}
	for range 2 {
		if get() != "1" {
			t.Fatal("a later get did not use the cached credential")
		}
	}
	clock.Add(11*time.Hour + 29*time.Minute) // before expiry - 30 min
	if got := get(); got != "1" {
		t.Fatalf("renewed too early: %s", got)
	}
	clock.Add(2 * time.Minute) // within the last 30 minutes
	if got := get(); got != "2" {
		t.Fatalf("not renewed shortly before expiry: %s", got)
	}
	// Invalidate drops only the credential that failed.
	if c.invalidate("k", auth.Credential{Password: "1"}) {
		t.Fatal("invalidate dropped a credential that had been renewed")
	}
	if !c.invalidate("k", auth.Credential{Password: "2"}) || get() != "3" {
		t.Fatal("invalidate did not force a fresh credential")
	}
	// A credential of one hour is renewed at 48 minutes.
	short := func(context.Context) (auth.Credential, time.Time, error) {
		n.Add(1)
		return auth.Credential{Password: "s"}, clock.Now().Add(time.Hour), nil
	}
	before := n.Load()
	c.get(ctx, "s", short)
	clock.Add(47 * time.Minute)
	c.get(ctx, "s", short)
	if n.Load() != before+1 {
		t.Fatal("one-hour credential renewed before 80% of its life")
	}
	clock.Add(2 * time.Minute)
	c.get(ctx, "s", short)
	if n.Load() != before+2 {
		t.Fatal("one-hour credential not renewed after 80% of its life")
	}
}

func TestCacheSingleFlightAndErrors(t *testing.T) {
	c := newCache(nil)
	release := make(chan struct{})
	var n atomic.Int64
	fetch := func(context.Context) (auth.Credential, time.Time, error) {
		n.Add(1)
		<-release
		return auth.Credential{Password: "p"}, time.Time{}, nil
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if cred, err := c.get(context.Background(), "k", fetch); err != nil || cred.Password != "p" {
				t.Errorf("get = %v, %v", cred, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n.Load() != 1 {
		t.Fatalf("%d fetches for 20 concurrent gets, want 1", n.Load())
	}
	// A caller that gives up does not fail the fetch for the others, and
	// errors are not cached.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	boom := errors.New("boom")
	if _, err := c.get(ctx, "e", func(context.Context) (auth.Credential, time.Time, error) {
		return auth.Credential{}, time.Time{}, boom
	}); !errors.Is(err, context.Canceled) && !errors.Is(err, boom) {
		t.Fatalf("cancelled get: %v", err)
	}
	for range 2 {
		if _, err := c.get(context.Background(), "e2", func(context.Context) (auth.Credential, time.Time, error) {
			return auth.Credential{}, time.Time{}, boom
		}); !errors.Is(err, boom) {
			t.Fatalf("error get: %v", err)
		}
	}
}
