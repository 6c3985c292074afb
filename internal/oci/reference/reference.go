// Package reference parses and normalises OCI/Docker image references of the
// form [registry/]repository[:tag][@digest].
//
// Normalisation rules (what Parse returns):
//   - The first path component is a registry only if it contains '.' or ':',
//     is "localhost" (any case), or is a bracketed IPv6 address; otherwise the
//     whole name is a Docker Hub repository.
//   - Registry hosts are case-insensitive and are stored lowercased.
//   - Docker Hub (no registry, "docker.io", "index.docker.io" or
//     "registry-1.docker.io") is stored as Registry "registry-1.docker.io",
//     the host requests go to, and a single-component repository gets the
//     "library/" prefix of official images.
//   - String and Name print Docker Hub as "docker.io" (the spelling users,
//     Kubernetes and containerd use); Parse maps it back, so
//     Parse(r.String()) == r for every r that Parse returns.
//   - A tag and a digest may both be present; both are kept. Which one goes on
//     the wire is Reference().
package reference

import (
	_ "crypto/sha256" // make digest.SHA256 Available for Validate
	_ "crypto/sha512" // make digest.SHA512 Available for Validate
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/ocisync/ocisync/internal/oci/errdef"
)

const (
	// DockerHubRegistry is the host Docker Hub requests go to; Parse stores
	// it in Reference.Registry for every Docker Hub reference.
	DockerHubRegistry = "registry-1.docker.io"
	// DockerHubDomain is how String and Name print Docker Hub.
	DockerHubDomain = "docker.io"
	// NameTotalLengthMax bounds len(Name()), as Docker does.
	NameTotalLengthMax = 255
	// DefaultTag is what WithDefaultTag sets.
	DefaultTag = "latest"

	maxTagLength = 128
	// maxQuoted bounds how much of an input an error message repeats, so a
	// hostile or mistaken multi-kilobyte string does not flood logs.
	maxQuoted = 512
	// maxQuotedPart bounds how much of one component a message repeats.
	maxQuotedPart = 160
)

// Reference is a parsed, normalised image reference. Build one with Parse
// (or WithTag/WithDigest on a parsed one); a hand-built value is not
// validated.
type Reference struct {
	Registry   string        // host[:port] for requests, lowercased; Docker Hub is "registry-1.docker.io"
	Repository string        // path, e.g. "library/alpine", "org/team/app"
	Tag        string        // may be empty
	Digest     digest.Digest // may be empty
}

// Parse parses s and normalises it (see the package comment). Every error
// wraps errdef.ErrInvalidReference and names the offending part.
func Parse(s string) (Reference, error) {
	fail := func(format string, args ...any) (Reference, error) {
		return Reference{}, invalid(s, format, args...)
	}
	if s == "" {
		return fail("reference is empty; expected [registry/]repository[:tag][@digest]")
	}
	if msg := checkChars(s); msg != "" {
		return fail("%s", msg)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return fail("must not include a URL scheme (%s); give host/repository[:tag][@digest], e.g. ghcr.io/org/app:1.0", quotePart(s[:i+3]))
	}
	if _, ok := credentialAt(s); ok {
		// No offset: the quoted input is redacted, so offsets would not match it.
		return fail("'@' is not followed by a digest (algorithm:hex); if this is user:password@host, references cannot carry credentials: configure registry credentials separately")
	}

	// Split off @digest, then :tag (a ':' after the last '/'; earlier ones
	// belong to a registry port).
	name, dgst, dgstOff := s, "", -1
	if i := strings.IndexByte(s, '@'); i >= 0 {
		name, dgst, dgstOff = s[:i], s[i+1:], i+1
		if j := strings.IndexByte(dgst, '@'); j >= 0 {
			return fail("unexpected '@' at offset %d: '@' may appear only once, to introduce the trailing digest", dgstOff+j)
		}
		if dgst == "" {
			return fail("'@' at offset %d must be followed by a digest such as sha256:<64 hex digits>", i)
		}
	}
	if !strings.Contains(name, "/") && strings.HasPrefix(name, "[") {
		return fail("registry %s must be followed by /repository", quotePart(name))
	}
	tag, tagOff := "", -1
	if i := strings.LastIndexByte(name, ':'); i >= 0 && i > strings.LastIndexByte(name, '/') {
		name, tag, tagOff = name[:i], name[i+1:], i+1
		if tag == "" {
			return fail("tag after ':' at offset %d is empty; remove the ':' or give a tag such as %q", i, DefaultTag)
		}
	}

	// Name: [registry/]path.
	switch {
	case name == "":
		return fail("repository name is missing")
	case name[0] == '/':
		return fail("must not start with '/'")
	case name[len(name)-1] == '/':
		return fail("name must not end with '/' (offset %d)", len(name)-1)
	}
	if i := strings.Index(name, "//"); i >= 0 {
		return fail("empty path component (\"//\") at offset %d", i)
	}
	registry, path, pathOff := "", name, 0
	if i := strings.IndexByte(name, '/'); i >= 0 && isRegistryComponent(name[:i]) {
		host, msg := checkRegistry(name[:i])
		if msg != "" {
			return fail("%s", msg)
		}
		registry, path, pathOff = host, name[i+1:], i+1
	}
	if msg := checkRepository(path, pathOff); msg != "" {
		return fail("%s", msg)
	}
	if tag != "" {
		if msg := checkTag(tag, tagOff); msg != "" {
			return fail("%s", msg)
		}
	}
	var d digest.Digest
	if dgst != "" {
		var msg string
		if d, msg = checkDigest(dgst, dgstOff); msg != "" {
			return fail("%s", msg)
		}
	}

	r := Reference{Registry: registry, Repository: path, Tag: tag, Digest: d}
	if isDockerHub(registry) {
		r.Registry = DockerHubRegistry
		if !strings.Contains(path, "/") {
			r.Repository = "library/" + path
		}
	}
	// Checked on the normalised name so that Parse(r.String()) agrees.
	if n := len(r.Name()); n > NameTotalLengthMax {
		return fail("name %s is %d characters long; the maximum is %d", quotePart(r.Name()), n, NameTotalLengthMax)
	}
	return r, nil
}

// MustParse is Parse for constants in tests and defaults; it panics on error.
func MustParse(s string) Reference {
	r, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return r
}

// String returns registry/repository[:tag][@digest], printing Docker Hub as
// "docker.io". Parse(r.String()) == r for any r returned by Parse.
func (r Reference) String() string {
	var b strings.Builder
	b.WriteString(r.Name())
	if r.Tag != "" {
		b.WriteByte(':')
		b.WriteString(r.Tag)
	}
	if r.Digest != "" {
		b.WriteByte('@')
		b.WriteString(string(r.Digest))
	}
	return b.String()
}

// Name returns registry/repository, printing Docker Hub as "docker.io" like
// String does. For request URLs use the Registry and Repository fields.
func (r Reference) Name() string {
	reg := r.Registry
	if reg == DockerHubRegistry {
		reg = DockerHubDomain
	}
	if reg == "" {
		return r.Repository
	}
	return reg + "/" + r.Repository
}

// Reference returns what goes in /v2/<name>/manifests/<reference>: the
// digest if set (it pins the content even when a tag is also given), else
// the tag, else "".
func (r Reference) Reference() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}

// WithTag returns a copy with the tag replaced (a digest, if any, is kept).
func (r Reference) WithTag(tag string) (Reference, error) {
	if err := ValidateTag(tag); err != nil {
		return Reference{}, err
	}
	r.Tag = tag
	return r, nil
}

// WithDigest returns a copy with the digest replaced (a tag, if any, is kept).
func (r Reference) WithDigest(d digest.Digest) (Reference, error) {
	if _, msg := checkDigest(string(d), 0); msg != "" {
		return Reference{}, fmt.Errorf("%w: %s", errdef.ErrInvalidReference, msg)
	}
	r.Digest = d
	return r, nil
}

// WithDefaultTag returns r with Tag "latest" when it has neither tag nor
// digest, else r unchanged. Parse leaves that choice to the caller.
func (r Reference) WithDefaultTag() Reference {
	if r.Tag == "" && r.Digest == "" {
		r.Tag = DefaultTag
	}
	return r
}

// IsDockerHub reports whether r points at Docker Hub.
func (r Reference) IsDockerHub() bool { return isDockerHub(r.Registry) }

// IsLocal reports whether r's registry is on the loopback interface
// (localhost, 127.0.0.0/8, ::1), where plain HTTP may be a sensible default.
func (r Reference) IsLocal() bool { return IsLocalhost(r.Registry) }

// IsLocalhost reports whether host (host, host:port, [v6] or [v6]:port) is
// "localhost" or a loopback IP literal. Names under .localhost are not
// included: whether they resolve to loopback depends on the resolver.
func IsLocalhost(host string) bool {
	h := host
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 || (end+1 < len(h) && h[end+1] != ':') {
			return false
		}
		h = h[1:end]
	} else if i := strings.IndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// ValidateTag checks tag against [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if tag == "" {
		return fmt.Errorf("%w: tag is empty", errdef.ErrInvalidReference)
	}
	if msg := checkTag(tag, 0); msg != "" {
		return fmt.Errorf("%w: %s", errdef.ErrInvalidReference, msg)
	}
	return nil
}

// ValidateRepository checks a repository path (without registry) against the
// distribution-spec grammar and the total name length.
func ValidateRepository(repo string) error {
	if msg := checkRepository(repo, 0); msg != "" {
		return fmt.Errorf("%w: %s", errdef.ErrInvalidReference, msg)
	}
	if len(repo) > NameTotalLengthMax {
		return fmt.Errorf("%w: repository %s is %d characters long; the maximum is %d", errdef.ErrInvalidReference, quotePart(repo), len(repo), NameTotalLengthMax)
	}
	return nil
}

func isDockerHub(registry string) bool {
	switch registry {
	case "", DockerHubDomain, "index.docker.io", DockerHubRegistry:
		return true
	}
	return false
}

// isRegistryComponent applies Docker's rule for whether the first path
// component names a registry rather than a Docker Hub namespace.
func isRegistryComponent(c string) bool {
	return strings.ContainsAny(c, ".:[") || strings.EqualFold(c, "localhost")
}

// invalid formats `invalid reference "<input>": <detail>` wrapping the
// sentinel.
func invalid(input, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", errdef.ErrInvalidReference, quoteInput(input), fmt.Sprintf(format, args...))
}

// checkChars rejects whitespace, control and non-ASCII characters, none of
// which the grammar allows anywhere, naming the first one and its offset.
func checkChars(s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			return fmt.Sprintf("contains whitespace %q at offset %d", rune(c), i)
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("contains control character %q at offset %d", rune(c), i)
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size <= 1 {
				return fmt.Sprintf("contains invalid UTF-8 byte 0x%02x at offset %d", c, i)
			}
			return fmt.Sprintf("contains non-ASCII character %q at offset %d; references are ASCII only", r, i)
		}
		i++
	}
	return ""
}

// credentialAt reports the offset of an '@' that looks like the userinfo
// separator of user[:password]@host rather than a digest separator: one with
// a '/' after it, or with a ':' before it in the same component and no
// algorithm: after it. Such input is never a valid reference, and error text
// must not repeat the credential (quoteInput redacts it).
func credentialAt(s string) (int, bool) {
	at := strings.IndexByte(s, '@')
	if at < 0 || at == len(s)-1 {
		return 0, false
	}
	if strings.Contains(s[at+1:], "/") {
		return at, true
	}
	seg := s[strings.LastIndexByte(s[:at], '/')+1 : at]
	return at, strings.Contains(seg, ":") && !looksLikeDigest(s[at+1:])
}

// looksLikeDigest reports whether s starts with a plausible algorithm
// followed by ':'.
func looksLikeDigest(s string) bool {
	i := strings.IndexByte(s, ':')
	if i <= 0 {
		return false
	}
	for j := 0; j < i; j++ {
		if c := s[j]; !isAlnum(c) && !strings.ContainsRune("+._-", rune(c)) {
			return false
		}
	}
	return true
}

// quoteInput quotes a reference for an error message, redacting a
// user[:password]@ part and truncating very long input.
func quoteInput(s string) string {
	if at, ok := credentialAt(s); ok {
		start := strings.LastIndexByte(s[:at], '/') + 1
		if i := strings.Index(s, "://"); i >= 0 && i+3 <= at && i+3 > start {
			start = i + 3
		}
		end := len(s)
		if j := strings.IndexByte(s[at:], '/'); j >= 0 {
			end = at + j
		}
		last := at + strings.LastIndexByte(s[at:end], '@')
		s = s[:start] + "REDACTED" + s[last:]
	}
	return truncQuote(s, maxQuoted)
}

func quotePart(s string) string { return truncQuote(s, maxQuotedPart) }

func truncQuote(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:n]) + fmt.Sprintf("... (%d characters)", len(s))
}

// checkRegistry validates host[:port] (host a domain name, IPv4 address or
// bracketed IPv6 address) and returns it lowercased.
func checkRegistry(reg string) (string, string) {
	port, hasPort := "", false
	if strings.HasPrefix(reg, "[") {
		end := strings.IndexByte(reg, ']')
		if end < 0 {
			return "", fmt.Sprintf("registry %s: missing ']' after the IPv6 address", quotePart(reg))
		}
		if rest := reg[end+1:]; rest != "" {
			if rest[0] != ':' {
				return "", fmt.Sprintf("registry %s: unexpected %s after ']'; expected \":port\" or '/'", quotePart(reg), quotePart(rest))
			}
			port, hasPort = rest[1:], true
		}
		if msg := checkIPv6(reg[1:end]); msg != "" {
			return "", fmt.Sprintf("registry %s: %s", quotePart(reg), msg)
		}
	} else {
		host := reg
		if i := strings.IndexByte(reg, ':'); i >= 0 {
			host, port, hasPort = reg[:i], reg[i+1:], true
			if strings.Contains(port, ":") {
				return "", fmt.Sprintf("registry %s: IPv6 addresses must be in brackets, e.g. [::1]:5000", quotePart(reg))
			}
		}
		if msg := checkHostname(host); msg != "" {
			return "", fmt.Sprintf("registry %s: %s", quotePart(reg), msg)
		}
	}
	if hasPort {
		if msg := checkPort(port); msg != "" {
			return "", fmt.Sprintf("registry %s: %s", quotePart(reg), msg)
		}
	}
	return strings.ToLower(reg), ""
}

// checkIPv6 accepts what Docker's grammar does (hex digits and colons, so no
// zones and no dotted IPv4 tail) and what is actually an IPv6 address.
func checkIPv6(a string) string {
	if a == "" {
		return "empty IPv6 address in brackets"
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c == '%' {
			return "IPv6 zone identifiers ('%') are not allowed"
		}
		if c != ':' && !isHex(c) {
			return fmt.Sprintf("invalid character %q in IPv6 address %s (only hex digits and ':' are allowed)", rune(c), quotePart(a))
		}
	}
	if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() {
		return fmt.Sprintf("%s is not a valid IPv6 address", quotePart(a))
	}
	return ""
}

// checkHostname validates a DNS name or IPv4 address: dot-separated labels of
// letters, digits and inner '-', each at most 63 characters.
func checkHostname(h string) string {
	if h == "" {
		return "host name is empty"
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return "host name has an empty label (leading, trailing or doubled '.')"
		}
		if len(label) > 63 {
			return fmt.Sprintf("host label %s is %d characters long; the maximum is 63", quotePart(label), len(label))
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return fmt.Sprintf("invalid character %q in host name (allowed: letters, digits, '-' and '.')", rune(c))
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("host label %s must not start or end with '-'", quotePart(label))
		}
	}
	return ""
}

func checkPort(p string) string {
	if p == "" {
		return "port after ':' is empty"
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return fmt.Sprintf("port %s is not a number", quotePart(p))
		}
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %s is out of range 1-65535", quotePart(p))
	}
	if p[0] == '0' {
		// Rejecting "05000" keeps one spelling per registry, which matters
		// for credentials looked up by host:port.
		return fmt.Sprintf("port %s must not have a leading zero", quotePart(p))
	}
	return ""
}

// checkRepository validates a repository path against
// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*.
// off is the path's offset in the input, for messages.
func checkRepository(path string, off int) string {
	switch {
	case path == "":
		return "repository name is empty"
	case path[0] == '/':
		return fmt.Sprintf("repository %s must not start with '/'", quotePart(path))
	case path[len(path)-1] == '/':
		return fmt.Sprintf("repository %s must not end with '/'", quotePart(path))
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c >= 'A' && c <= 'Z' {
			return fmt.Sprintf("repository names must be lowercase: %s has %q at offset %d", quotePart(path), rune(c), off+i)
		}
	}
	start := 0
	for start <= len(path) {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		if msg := checkComponent(path, path[start:end], off+start); msg != "" {
			return msg
		}
		start = end + 1
	}
	return ""
}

func checkComponent(path, c string, off int) string {
	if c == "" {
		return fmt.Sprintf("repository %s has an empty path component (\"//\") at offset %d", quotePart(path), off)
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !isLowerAlnum(b) && b != '.' && b != '_' && b != '-' {
			if b == ':' {
				return fmt.Sprintf("repository %s: unexpected ':' at offset %d (':' may appear only before the tag, after the last '/', or before a registry port)", quotePart(path), off+i)
			}
			return fmt.Sprintf("repository %s: invalid character %q at offset %d (allowed: lowercase letters, digits, '.', '_', '-', and '/' between components)", quotePart(path), rune(b), off+i)
		}
	}
	if !isLowerAlnum(c[0]) {
		return fmt.Sprintf("repository %s: path component %s must start with a lowercase letter or digit (offset %d)", quotePart(path), quotePart(c), off)
	}
	if !isLowerAlnum(c[len(c)-1]) {
		return fmt.Sprintf("repository %s: path component %s must end with a lowercase letter or digit (offset %d)", quotePart(path), quotePart(c), off+len(c)-1)
	}
	for i := 0; i < len(c); {
		if isLowerAlnum(c[i]) {
			i++
			continue
		}
		j := i
		for j < len(c) && !isLowerAlnum(c[j]) {
			j++
		}
		if sep := c[i:j]; sep != "." && sep != "_" && sep != "__" && strings.Trim(sep, "-") != "" {
			return fmt.Sprintf("repository %s: invalid separator %q at offset %d (separate letters and digits with '.', '_', '__' or one or more '-')", quotePart(path), sep, off+i)
		}
		i = j
	}
	return ""
}

// checkTag validates a non-empty tag; off is its offset in the input.
func checkTag(tag string, off int) string {
	if len(tag) > maxTagLength {
		return fmt.Sprintf("tag %s is %d characters long; the maximum is %d", quotePart(tag), len(tag), maxTagLength)
	}
	if c := tag[0]; !isAlnum(c) && c != '_' {
		return fmt.Sprintf("tag %s must start with a letter, digit or '_', not %q (offset %d)", quotePart(tag), rune(c), off)
	}
	for i := 1; i < len(tag); i++ {
		if c := tag[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return fmt.Sprintf("tag %s: invalid character %q at offset %d (allowed: letters, digits, '_', '.' and '-')", quotePart(tag), rune(c), off+i)
		}
	}
	return ""
}

// supportedDigests are the algorithms registered by the OCI image spec.
var supportedDigests = map[digest.Algorithm]bool{digest.SHA256: true, digest.SHA512: true}

// checkDigest validates algorithm:hex, with a specific message for each way
// it can be wrong; off is its offset in the input.
func checkDigest(s string, off int) (digest.Digest, string) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return "", fmt.Sprintf("digest %s must have the form algorithm:hex, e.g. sha256:<64 hex digits>", quotePart(s))
	}
	alg, enc := digest.Algorithm(s[:i]), s[i+1:]
	if alg == "" {
		return "", fmt.Sprintf("digest %s has no algorithm before ':' (offset %d)", quotePart(s), off+i)
	}
	if !supportedDigests[alg] {
		return "", fmt.Sprintf("digest algorithm %s is not supported; use sha256 or sha512", quotePart(string(alg)))
	}
	if enc == "" {
		return "", fmt.Sprintf("digest %s has no hex after ':'", quotePart(s))
	}
	for j := 0; j < len(enc); j++ {
		c := enc[j]
		if c >= 'A' && c <= 'F' {
			return "", fmt.Sprintf("digest %s: hex must be lowercase, found %q at offset %d", quotePart(s), rune(c), off+i+1+j)
		}
		if !isHex(c) {
			return "", fmt.Sprintf("digest %s: invalid character %q at offset %d (the encoded part must be lowercase hex)", quotePart(s), rune(c), off+i+1+j)
		}
	}
	if want := alg.Size() * 2; len(enc) != want {
		return "", fmt.Sprintf("digest %s has %d hex digits; %s needs %d", quotePart(s), len(enc), alg, want)
	}
	d := digest.Digest(s)
	if err := d.Validate(); err != nil { // belt and braces: go-digest is what verifies content later
		return "", fmt.Sprintf("digest %s: %v", quotePart(s), err)
	}
	return d, ""
}

func isLowerAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || (c >= 'A' && c <= 'Z') }
func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
