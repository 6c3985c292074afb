package cloudauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecrpublic"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ocisync/ocisync/internal/oci/auth"
)

// awsRetryAttempts is lower than the SDK's default of 3: the controller
// retries the whole sync with backoff itself.
const awsRetryAttempts = 2

type awsSource struct {
	c *Credentials

	mu      sync.Mutex
	configs map[string]aws.Config // by the region given when the environment has none
}

func newAWS(c *Credentials) *awsSource {
	return &awsSource{c: c, configs: map[string]aws.Config{}}
}

func (s *awsSource) key(cloudHost string) string {
	r, _ := ParseECRHost(cloudHost)
	return fmt.Sprintf("aws\x00%t\x00%s\x00%s\x00%t", r.Public, r.Account, r.Region, r.FIPS)
}

// config loads the SDK's shared configuration and default credential
// chain once; region is used only when the environment names none.
func (s *awsSource) config(ctx context.Context, region string) (aws.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg, ok := s.configs[""]; ok {
		return cfg, nil
	}
	if cfg, ok := s.configs[region]; ok {
		return cfg, nil
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awsHTTPClient(s.c.hc)),
		config.WithRetryMaxAttempts(awsRetryAttempts),
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, err
	}
	if cfg.Region != "" {
		s.configs[""] = cfg
		return cfg, nil
	}
	cfg, err = config.LoadDefaultConfig(ctx, append(opts, config.WithRegion(region))...)
	if err != nil {
		return aws.Config{}, err
	}
	s.configs[region] = cfg
	return cfg, nil
}

// awsHTTPClient is hc as the SDK's BuildableClient, on a copy of hc's
// transport (its proxy, dialer restrictions and TLS settings) and with its
// timeout: the SDK adds the roots of AWS_CA_BUNDLE (or a profile's
// ca_bundle) to such a client only, and refuses to load its configuration
// with any other when one is set. A client whose transport is not an
// *http.Transport is used as it is, and then AWS_CA_BUNDLE cannot work.
func awsHTTPClient(hc *http.Client) aws.HTTPClient {
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	base, ok := rt.(*http.Transport)
	if !ok || hc.Jar != nil || hc.CheckRedirect != nil {
		return hc
	}
	return awshttp.NewBuildableClient().WithTimeout(hc.Timeout).WithTransportOptions(func(tr *http.Transport) {
		c := base.Clone()
		tr.Proxy = c.Proxy
		tr.OnProxyConnectResponse = c.OnProxyConnectResponse
		tr.ProxyConnectHeader = c.ProxyConnectHeader
		tr.GetProxyConnectHeader = c.GetProxyConnectHeader
		tr.DialContext = c.DialContext
		tr.DialTLSContext = c.DialTLSContext
		tr.TLSClientConfig = c.TLSClientConfig
		tr.TLSHandshakeTimeout = c.TLSHandshakeTimeout
		tr.DisableKeepAlives = c.DisableKeepAlives
		tr.DisableCompression = c.DisableCompression
		tr.MaxIdleConns = c.MaxIdleConns
		tr.MaxIdleConnsPerHost = c.MaxIdleConnsPerHost
		tr.MaxConnsPerHost = c.MaxConnsPerHost
		tr.IdleConnTimeout = c.IdleConnTimeout
		tr.ResponseHeaderTimeout = c.ResponseHeaderTimeout
		tr.ExpectContinueTimeout = c.ExpectContinueTimeout
		tr.MaxResponseHeaderBytes = c.MaxResponseHeaderBytes
		tr.ForceAttemptHTTP2 = c.ForceAttemptHTTP2
	})
}

func (s *awsSource) fetch(ctx context.Context, cloudHost, host string, id *Identity) (auth.Credential, time.Time, error) {
	reg, err := ParseECRHost(cloudHost)
	if err != nil {
		return auth.Credential{}, time.Time{}, err
	}
	cfg, err := s.config(ctx, reg.Region)
	if err != nil {
		return auth.Credential{}, time.Time{}, &Error{Provider: AWS, Host: host, Step: "loading the AWS configuration", Kind: ErrAuthFailed, Err: err}
	}
	cfg = cfg.Copy()
	if id != nil {
		creds, err := s.identityCredentials(ctx, cfg, host, id)
		if err != nil {
			return auth.Credential{}, time.Time{}, err
		}
		cfg.Credentials = creds
	}
	// The identity first, so that its failure names its own step.
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return auth.Credential{}, time.Time{}, awsError(host, credentialStep(id), err)
	}
	var token string
	var expires time.Time
	if reg.Public {
		out, err := ecrpublic.NewFromConfig(cfg, func(o *ecrpublic.Options) { o.Region = "us-east-1" }).
			GetAuthorizationToken(ctx, &ecrpublic.GetAuthorizationTokenInput{})
		if err != nil {
			return auth.Credential{}, time.Time{}, awsError(host, "ECR Public GetAuthorizationToken", err)
		}
		if d := out.AuthorizationData; d != nil {
			token, expires = aws.ToString(d.AuthorizationToken), aws.ToTime(d.ExpiresAt)
		}
	} else {
		out, err := ecr.NewFromConfig(cfg, func(o *ecr.Options) {
			o.Region = reg.Region
			if reg.FIPS && o.BaseEndpoint == nil {
				o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateEnabled
			}
		}).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
		if err != nil {
			return auth.Credential{}, time.Time{}, awsError(host, "ECR GetAuthorizationToken", err)
		}
		if len(out.AuthorizationData) > 0 {
			d := out.AuthorizationData[0]
			token, expires = aws.ToString(d.AuthorizationToken), aws.ToTime(d.ExpiresAt)
		}
	}
	user, pass, err := decodeECRToken(token)
	if err != nil {
		return auth.Credential{}, time.Time{}, &Error{Provider: AWS, Host: host, Step: "reading the ECR authorization token", Kind: ErrAuthFailed, Err: err}
	}
	return auth.Credential{Username: user, Password: pass}, expires, nil
}

func credentialStep(id *Identity) string {
	switch {
	case id == nil:
		return "the default credential chain"
	case id.roleARN != "":
		return "STS AssumeRoleWithWebIdentity as " + id.String()
	default:
		return "EKS Pod Identity for " + id.String()
	}
}

// identityCredentials are the credentials of id's ServiceAccount: IRSA
// when it names a role, else EKS Pod Identity.
func (s *awsSource) identityCredentials(ctx context.Context, cfg aws.Config, host string, id *Identity) (aws.CredentialsProvider, error) {
	if id.roleARN != "" {
		stsClient := sts.NewFromConfig(cfg)
		p := stscreds.NewWebIdentityRoleProvider(stsClient, id.roleARN, tokenRetriever{ctx, id, AudienceAWSSTS}, func(o *stscreds.WebIdentityRoleOptions) {
			o.RoleSessionName = sessionName(id)
		})
		return aws.NewCredentialsCache(p), nil
	}
	uri := s.c.getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
	if uri == "" {
		return nil, &Error{Provider: AWS, Host: host, Step: "reading the cloud identity of " + id.String(), Kind: ErrUnsupported,
			Err: fmt.Errorf("the ServiceAccount has no %s annotation, and the manager does not run where the EKS Pod Identity agent is (AWS_CONTAINER_CREDENTIALS_FULL_URI is unset); annotate the ServiceAccount with the IAM role to assume, or install the EKS Pod Identity Agent add-on and associate the manager", AnnotationAWSRoleARN)}
	}
	p := endpointcreds.New(uri, func(o *endpointcreds.Options) {
		o.HTTPClient = s.c.hc
		o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
			return id.Token(ctx, AudienceEKSPodIdentity)
		})
	})
	return aws.NewCredentialsCache(p), nil
}

// tokenRetriever adapts a TokenFunc to the SDK, whose interface has no
// context: a retriever is made for one fetch and carries its context.
type tokenRetriever struct {
	ctx      context.Context
	id       *Identity
	audience string
}

func (r tokenRetriever) GetIdentityToken() ([]byte, error) {
	tok, err := r.id.Token(r.ctx, r.audience)
	if err != nil {
		return nil, fmt.Errorf("requesting a token of %s for audience %s: %w", r.id, r.audience, err)
	}
	return []byte(tok), nil
}

var sessionChars = lazyRegexp(`[^\w+=,.@-]`)

// sessionName is the role session name CloudTrail shows: the
// ServiceAccount, within STS's 64 characters.
func sessionName(id *Identity) string {
	s := sessionChars().ReplaceAllString("ocisync@"+id.Namespace+"."+id.Name, "-")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// decodeECRToken splits ECR's base64 "user:password".
func decodeECRToken(token string) (string, string, error) {
	if token == "" {
		return "", "", errors.New("the response holds no authorization token")
	}
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return "", "", errors.New("the authorization token is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		return "", "", errors.New("the authorization token is not user:password")
	}
	return user, pass, nil
}

// awsError classifies an SDK error by the HTTP status it carries.
func awsError(host, step string, err error) error {
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return classify(AWS, host, step, status, err)
}
