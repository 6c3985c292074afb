package cloudtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// AWSSTSAudience is the audience of the ServiceAccount tokens STS takes
// for AssumeRoleWithWebIdentity.
const AWSSTSAudience = "sts.amazonaws.com"

// AWS is STS, ECR (and ECR Public) and the EKS Pod Identity agent. STS
// accepts a web identity token given with Accept for its role, or a
// ServiceAccount token of audience AWSSTSAudience whose subject was
// allowed the role (AllowRole); ECR accepts only requests signed with
// keys STS or the agent handed out, and hands out passwords
// "ecr-password-<n>", valid 12 hours.
type AWS struct {
	STS, ECR, Pod *Endpoint

	// ECRHost is the proxyEndpoint ECR names.
	ECRHost string
	// Now is ECR's clock for the expiry of its tokens; nil: time.Now.
	Now func() time.Time
	// OnPassword, if set, is called with each ECR password handed out
	// (under the fake's lock), e.g. to make a registry accept it only.
	OnPassword func(password string)

	mu        sync.Mutex
	jwts      map[string]string // web identity token -> role ARN it may assume
	roles     map[string]string // ServiceAccount subject -> role ARN it may assume
	keys      map[string]bool   // access key IDs handed out
	podToken  string
	n         int
	ecrDown   bool
	subjects  []string
	passwords []string
	regions   []string
}

// NewAWS starts the endpoints; the test points AWS_ENDPOINT_URL_STS,
// AWS_ENDPOINT_URL_ECR (and _ECR_PUBLIC) at them.
func NewAWS(t T, ecrHost string) *AWS {
	f := &AWS{ECRHost: ecrHost, jwts: map[string]string{}, roles: map[string]string{}, keys: map[string]bool{}}
	f.STS = NewEndpoint(t, false, f.serveSTS)
	f.ECR = NewEndpoint(t, false, f.serveECR)
	f.Pod = NewEndpoint(t, false, f.servePod)
	return f
}

// Accept lets web identity token jwt assume role.
func (f *AWS) Accept(jwt, role string) { f.mu.Lock(); f.jwts[jwt] = role; f.mu.Unlock() }

// AllowRole lets the ServiceAccount tokens of subject assume role.
func (f *AWS) AllowRole(subject, role string) { f.mu.Lock(); f.roles[subject] = role; f.mu.Unlock() }

// SetPodToken makes the agent accept the ServiceAccount token tok.
func (f *AWS) SetPodToken(tok string) { f.mu.Lock(); f.podToken = tok; f.mu.Unlock() }

// SetECRDown makes ECR answer 503.
func (f *AWS) SetECRDown(down bool) { f.mu.Lock(); f.ecrDown = down; f.mu.Unlock() }

// Subjects are the subjects of the ServiceAccount tokens STS was given.
func (f *AWS) Subjects() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.subjects...)
}

// Passwords are the ECR passwords handed out, oldest first.
func (f *AWS) Passwords() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.passwords...)
}

// Regions are the regions ECR requests were signed for, oldest first.
func (f *AWS) Regions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.regions...)
}

// Current is the newest ECR password, "" before the first.
func (f *AWS) Current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.passwords) == 0 {
		return ""
	}
	return f.passwords[len(f.passwords)-1]
}

// Rotate makes a new ECR password, as if the ones handed out before had
// expired, and returns it.
func (f *AWS) Rotate() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rotateLocked()
}

func (f *AWS) rotateLocked() string {
	pass := fmt.Sprintf("ecr-password-%d", len(f.passwords)+1)
	f.passwords = append(f.passwords, pass)
	if f.OnPassword != nil {
		f.OnPassword(pass)
	}
	return pass
}

func (f *AWS) newKey() (string, string) {
	f.n++
	id := fmt.Sprintf("ASIAFAKE%08d", f.n)
	f.keys[id] = true
	return id, "secret-" + id
}

func (f *AWS) serveSTS(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("Action") != "AssumeRoleWithWebIdentity" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	tok, role := r.PostForm.Get("WebIdentityToken"), r.PostForm.Get("RoleArn")
	f.mu.Lock()
	defer f.mu.Unlock()
	allowed, ok := f.jwts[tok]
	if !ok {
		c := ReadClaims(tok)
		if c.Sub != "" {
			f.subjects = append(f.subjects, c.Sub)
		}
		allowed, ok = f.roles[c.Sub]
		ok = ok && c.Is(c.Sub, AWSSTSAudience)
	}
	if !ok || role == "" || allowed != role {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Incorrect token audience</Message></Error><RequestId>r</RequestId></ErrorResponse>`)
		return
	}
	id, secret := f.newKey()
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>
<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>session-%s</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>%s/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser><SubjectFromWebIdentityToken>sub</SubjectFromWebIdentityToken>
</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
		id, secret, id, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), role)
}

func (f *AWS) servePod(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.podToken == "" || r.Header.Get("Authorization") != f.podToken {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"code":"InvalidTokenException","message":"Service account token cannot be empty or invalid"}`)
		return
	}
	id, secret := f.newKey()
	_ = json.NewEncoder(w).Encode(map[string]string{
		"AccessKeyId": id, "SecretAccessKey": secret, "Token": "session-" + id,
		"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})
}

func (f *AWS) serveECR(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if !strings.HasSuffix(target, ".GetAuthorizationToken") {
		http.Error(w, "unexpected "+target, http.StatusBadRequest)
		return
	}
	// Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, ...
	_, cred, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	parts := strings.Split(strings.Split(cred, ",")[0], "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch {
	case f.ecrDown:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"__type":"ServerException","message":"unavailable"}`)
		return
	case len(parts) < 5 || !f.keys[parts[0]]:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}`)
		return
	}
	f.regions = append(f.regions, parts[2])
	pass := f.rotateLocked()
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	exp := float64(now.Add(12*time.Hour).UnixMilli()) / 1000
	tok := base64.StdEncoding.EncodeToString([]byte("AWS:" + pass))
	if strings.HasPrefix(target, "SpencerFrontendService") { // ECR Public
		fmt.Fprintf(w, `{"authorizationData":{"authorizationToken":%q,"expiresAt":%f}}`, tok, exp)
		return
	}
	fmt.Fprintf(w, `{"authorizationData":[{"authorizationToken":%q,"expiresAt":%f,"proxyEndpoint":"https://%s"}]}`, tok, exp, f.ECRHost)
}
