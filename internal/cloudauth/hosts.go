package cloudauth

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
)

// Provider names where an Artifact's registry credentials come from.
type Provider string

// Providers. Generic is the default: pull secrets or anonymous, nothing of
// this package.
const (
	Generic Provider = "generic"
	AWS     Provider = "aws"
	GCP     Provider = "gcp"
	Azure   Provider = "azure"
)

// ParseProvider checks a spec.provider value; empty means Generic.
func ParseProvider(s string) (Provider, error) {
	switch p := Provider(s); p {
	case "":
		return Generic, nil
	case Generic, AWS, GCP, Azure:
		return p, nil
	default:
		return "", fmt.Errorf("provider %q is not one of generic, aws, gcp, azure", s)
	}
}

// ecrHost matches the hosts of ECR private registries, as the ECR
// credential helper does: <account>.dkr.ecr[-fips].<region>.<partition
// suffix>, the dual-stack form <account>.dkr-ecr[-fips].<region>.on.aws,
// and the partitions of China and the ISO regions.
var ecrHost = lazyRegexp(`^([0-9]{12})\.dkr[.-]ecr(-fips)?\.([a-z0-9][a-z0-9-]*)\.(amazonaws\.com|amazonaws\.com\.cn|on\.aws|on\.amazonwebservices\.com\.cn|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$`)

// ecrPublicHost is ECR Public's only registry host. Its credentials come
// from us-east-1.
const ecrPublicHost = "public.ecr.aws"

// garHost matches Artifact Registry (<location>-docker.pkg.dev) and
// Container Registry (gcr.io and its regional hosts such as eu.gcr.io).
var garHost = lazyRegexp(`^([a-z0-9][a-z0-9-]*-docker\.pkg\.dev|gcr\.io|[a-z0-9][a-z0-9-]*\.gcr\.io)$`)

// acrSuffixes are the login-server suffixes of Azure Container Registry in
// the clouds that exist today: public, China (21Vianet) and US Government.
// Azure Germany's azurecr.de closed in 2021 and is refused.
var acrSuffixes = []string{".azurecr.io", ".azurecr.cn", ".azurecr.us"}

// acrName is one DNS label: the registry name, with the optional
// domain-name-label hash after a hyphen (myregistry-abc123).
var acrName = lazyRegexp(`^[a-z0-9][a-z0-9-]*$`)

// ECRRegistry is what an ECR host says about the registry.
type ECRRegistry struct {
	Public  bool   // public.ecr.aws: ECR Public, credentials from us-east-1
	Account string // 12 digits; empty for ECR Public
	Region  string
	FIPS    bool
}

// lazyRegexp compiles expr on first use: the manager pays nothing at
// start for a provider it does not use.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// CheckHost tells whether provider p may send its credentials to the
// registry host (host[:port], as in a reference). Cloud registries are
// reached on 443 only: a host with any other port is refused, and so is
// every host that is not the cloud's own registry, so that a credential
// never goes to the wrong registry. Generic accepts any host.
func CheckHost(p Provider, host string) error {
	switch p {
	case Generic, "":
		return nil
	case AWS:
		_, err := ParseECRHost(host)
		return err
	case GCP, Azure:
		name, err := bareHost(p, host)
		if err != nil {
			return err
		}
		if p == GCP {
			if !garHost().MatchString(name) {
				return hostError(p, host, "is not a Google Artifact Registry (<location>-docker.pkg.dev) or Container Registry (gcr.io, <region>.gcr.io) host")
			}
			return nil
		}
		if _, ok := acrSuffix(name); !ok {
			return hostError(p, host, "is not an Azure Container Registry host (<name>.azurecr.io, .azurecr.cn or .azurecr.us)")
		}
		return nil
	default:
		return fmt.Errorf("provider %q is not one of generic, aws, gcp, azure", p)
	}
}

// ParseECRHost checks an ECR host and returns its account and region.
func ParseECRHost(host string) (ECRRegistry, error) {
	name, err := bareHost(AWS, host)
	if err != nil {
		return ECRRegistry{}, err
	}
	if name == ecrPublicHost {
		return ECRRegistry{Public: true, Region: "us-east-1"}, nil
	}
	m := ecrHost().FindStringSubmatch(name)
	if m == nil {
		return ECRRegistry{}, hostError(AWS, host, "is not an Amazon ECR host (<account>.dkr.ecr.<region>.amazonaws.com, its FIPS, dual-stack and China forms, or public.ecr.aws)")
	}
	return ECRRegistry{Account: m[1], FIPS: m[2] != "", Region: m[3]}, nil
}

// acrSuffix returns the cloud suffix of an ACR login server.
func acrSuffix(name string) (string, bool) {
	for _, s := range acrSuffixes {
		if label, ok := strings.CutSuffix(name, s); ok && acrName().MatchString(label) {
			return s, true
		}
	}
	return "", false
}

// bareHost lowercases host and strips a :443 port; any other port, a
// path, user info or an IP address is refused.
func bareHost(p Provider, host string) (string, error) {
	h := strings.ToLower(host)
	if h == "" {
		return "", hostError(p, host, "is empty")
	}
	if strings.ContainsAny(h, "/@?#[] \t") {
		return "", hostError(p, host, "is not a bare host name")
	}
	if name, port, err := net.SplitHostPort(h); err == nil {
		if port != "443" {
			return "", hostError(p, host, "has port "+port+"; the cloud's registries are only on 443")
		}
		h = name
	}
	h = strings.TrimSuffix(h, ".")
	if net.ParseIP(h) != nil {
		return "", hostError(p, host, "is an IP address, not the cloud's registry")
	}
	return h, nil
}

func hostError(p Provider, host, why string) error {
	return &Error{Provider: p, Host: host, Step: "host check", Kind: ErrHostRefused, Err: fmt.Errorf("registry host %q %s; provider %s sends credentials only to its own registries (use provider generic with pull secrets for other registries)", host, why, p)}
}
