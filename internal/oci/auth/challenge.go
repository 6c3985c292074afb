package auth

import (
	"fmt"
	"sort"
	"strings"
)

// Challenge is one authentication challenge of a WWW-Authenticate header
// (RFC 7235 section 4.1).
type Challenge struct {
	// Scheme is the auth scheme, lowercased: "basic", "bearer", ...
	Scheme string
	// Token68 is the token68 form of credentials ("Negotiate abc=="), if
	// the challenge uses it instead of parameters.
	Token68 string
	// Params are the auth-params with lowercased names and unescaped
	// values. Never nil for parsed challenges.
	Params map[string]string
}

// String renders c in canonical form: the scheme, then the token68 or the
// parameters sorted by name with every value quoted. ParseChallenges of
// the result gives c back.
func (c Challenge) String() string {
	var b strings.Builder
	b.WriteString(c.Scheme)
	if c.Token68 != "" {
		b.WriteByte(' ')
		b.WriteString(c.Token68)
	}
	keys := make([]string, 0, len(c.Params))
	for k := range c.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteString(`="`)
		for j := 0; j < len(c.Params[k]); j++ {
			ch := c.Params[k][j]
			if ch == '"' || ch == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(ch)
		}
		b.WriteByte('"')
	}
	return b.String()
}

// ParseChallenges parses a WWW-Authenticate header value (several header
// lines may be joined with ", "). It accepts several challenges in one
// value, quoted strings with backslash escapes and commas, token68
// credentials, empty list elements and case-insensitive scheme and
// parameter names. Beyond RFC 7235 it accepts unquoted parameter values
// that are not tokens (realm=https://auth.example.com/token), as
// registries send them; such a value ends at a comma or whitespace.
//
// It fails on an unterminated quoted string, a parameter without a value,
// a duplicated parameter (its meaning would be ambiguous), control
// characters, and text that fits none of the forms. An empty header gives
// no challenges and no error.
func ParseChallenges(header string) ([]Challenge, error) {
	p := challengeParser{s: header}
	return p.parse()
}

type challengeParser struct {
	s string
	i int
}

func (p *challengeParser) errorf(format string, args ...any) error {
	return fmt.Errorf("malformed WWW-Authenticate header at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *challengeParser) eof() bool { return p.i >= len(p.s) }

func (p *challengeParser) skipOWS() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// skipListSeparators skips whitespace and commas: RFC 7230 lists may hold
// empty elements.
func (p *challengeParser) skipListSeparators() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

func (p *challengeParser) token() string {
	start := p.i
	for !p.eof() && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *challengeParser) parse() ([]Challenge, error) {
	var out []Challenge
	for {
		p.skipListSeparators()
		if p.eof() {
			return out, nil
		}
		ch, err := p.challenge()
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
}

// challenge parses one challenge and stops before the comma that may start
// the next one.
func (p *challengeParser) challenge() (Challenge, error) {
	scheme := p.token()
	if scheme == "" {
		return Challenge{}, p.errorf("expected an auth scheme, found %q", p.s[p.i])
	}
	ch := Challenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
	if p.eof() || p.s[p.i] == ',' {
		return ch, nil
	}
	if p.s[p.i] != ' ' && p.s[p.i] != '\t' {
		return Challenge{}, p.errorf("unexpected %q after auth scheme %q", p.s[p.i], scheme)
	}
	p.skipOWS()
	if p.eof() {
		return ch, nil
	}
	if t68, ok := p.token68(); ok {
		ch.Token68 = t68
		return ch, nil
	}
	return ch, p.params(&ch)
}

// token68 reads "1*tchar68 *'='" when it is followed by the end of the
// challenge; otherwise it consumes nothing (it was a parameter name).
func (p *challengeParser) token68() (string, bool) {
	start := p.i
	j := p.i
	for j < len(p.s) && isToken68Char(p.s[j]) {
		j++
	}
	if j == start {
		return "", false
	}
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	end := j
	for j < len(p.s) && (p.s[j] == ' ' || p.s[j] == '\t') {
		j++
	}
	if j < len(p.s) && p.s[j] != ',' {
		return "", false
	}
	p.i = j
	return p.s[start:end], true
}

// params reads the auth-param list of ch. A token not followed by '='
// after a comma starts the next challenge, so params stops there.
func (p *challengeParser) params(ch *Challenge) error {
	afterComma := false
	for {
		p.skipOWS()
		if p.eof() {
			return nil
		}
		if p.s[p.i] == ',' {
			p.i++
			afterComma = true
			continue
		}
		start := p.i
		name := p.token()
		if name == "" {
			return p.errorf("expected a parameter name, found %q", p.s[p.i])
		}
		p.skipOWS()
		if p.eof() || p.s[p.i] != '=' {
			if !afterComma {
				return p.errorf("expected '=' after parameter name %q", name)
			}
			p.i = start // the next challenge's scheme
			return nil
		}
		p.i++ // '='
		p.skipOWS()
		value, err := p.value(name)
		if err != nil {
			return err
		}
		key := strings.ToLower(name)
		if _, dup := ch.Params[key]; dup {
			return p.errorf("parameter %q appears twice in one challenge", key)
		}
		ch.Params[key] = value
		p.skipOWS()
		if !p.eof() && p.s[p.i] != ',' {
			return p.errorf("expected ',' after the value of parameter %q, found %q", name, p.s[p.i])
		}
		afterComma = false
	}
}

func (p *challengeParser) value(name string) (string, error) {
	if p.eof() {
		return "", p.errorf("parameter %q has no value", name)
	}
	if p.s[p.i] == '"' {
		return p.quoted(name)
	}
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		if c == ',' || c == ' ' || c == '\t' || c == '"' {
			break
		}
		if isCTL(c) {
			return "", p.errorf("control character in the value of parameter %q", name)
		}
		p.i++
	}
	if p.i == start {
		return "", p.errorf("parameter %q has no value", name)
	}
	return p.s[start:p.i], nil
}

// quoted reads a quoted-string starting at the opening quote.
func (p *challengeParser) quoted(name string) (string, error) {
	open := p.i
	p.i++
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) {
				p.i = open
				return "", p.errorf("unterminated quoted string in parameter %q", name)
			}
			if esc := p.s[p.i+1]; isCTL(esc) {
				p.i++
				return "", p.errorf("control character in the value of parameter %q", name)
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case isCTL(c):
			return "", p.errorf("control character in the value of parameter %q", name)
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	p.i = open
	return "", p.errorf("unterminated quoted string in parameter %q", name)
}

// isTchar reports RFC 7230 token characters.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isToken68Char reports RFC 7235 token68 characters other than the
// trailing '='.
func isToken68Char(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

// isCTL reports control characters that may not appear in a quoted string
// (horizontal tab may).
func isCTL(c byte) bool {
	return (c < 0x20 && c != '\t') || c == 0x7f
}
