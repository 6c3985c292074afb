package auth

import (
	"context"
	"sort"
	"strings"
)

// Repository actions of the distribution token scope grammar.
const (
	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
)

// ScopeRegistryCatalog is the scope for listing repositories.
const ScopeRegistryCatalog = "registry:catalog:*"

// RepositoryScope returns "repository:<repo>:<actions>" with the actions
// sorted and de-duplicated ("*" stands for all and absorbs the others). It
// returns "" when repo or the actions are empty; "" scopes are ignored
// everywhere.
func RepositoryScope(repo string, actions ...string) string {
	if repo == "" {
		return ""
	}
	acts := cleanActions(actions)
	if len(acts) == 0 {
		return ""
	}
	return "repository:" + repo + ":" + strings.Join(acts, ",")
}

// CleanScopes normalises a scope list: each element may hold several
// space-separated scopes (as the challenge "scope" parameter does);
// "type:name:actions" scopes for the same type and name are merged into one
// with their actions united, sorted and de-duplicated ("*" wins); scopes
// that do not have that form (e.g. public ECR's "aws") are kept verbatim;
// scopes with no action are dropped. The result is sorted.
func CleanScopes(scopes []string) []string {
	type resource struct{ typ, name string }
	actions := map[resource]map[string]bool{}
	opaque := map[string]bool{}
	for _, s := range scopes {
		for _, f := range strings.Fields(s) {
			i := strings.IndexByte(f, ':')
			j := strings.LastIndexByte(f, ':')
			if i < 0 || i == j || i == 0 || j == i+1 {
				opaque[f] = true
				continue
			}
			r := resource{typ: f[:i], name: f[i+1 : j]}
			set := actions[r]
			if set == nil {
				set = map[string]bool{}
				actions[r] = set
			}
			for _, a := range strings.Split(f[j+1:], ",") {
				if a = strings.TrimSpace(a); a != "" {
					set[a] = true
				}
			}
		}
	}
	out := make([]string, 0, len(actions)+len(opaque))
	for r, set := range actions {
		acts := make([]string, 0, len(set))
		for a := range set {
			acts = append(acts, a)
		}
		if acts = cleanActions(acts); len(acts) > 0 {
			out = append(out, r.typ+":"+r.name+":"+strings.Join(acts, ","))
		}
	}
	for s := range opaque {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func cleanActions(actions []string) []string {
	set := map[string]bool{}
	for _, a := range actions {
		if a = strings.TrimSpace(a); a != "" {
			set[a] = true
		}
	}
	if set["*"] {
		return []string{"*"}
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

type scopesKey struct{}

type hostScopesKey struct{ host string }

// WithScopes returns a context whose requests ask token servers for scopes
// in addition to what the registry's challenge names, so that one token
// covers what the caller is about to do. Scopes accumulate: the result
// holds the scopes already in ctx as well.
//
// These hints go to the token server of every registry the context is
// used with; use WithScopesForHost when one context talks to several
// registries.
func WithScopes(ctx context.Context, scopes ...string) context.Context {
	merged := CleanScopes(append(ScopesFromContext(ctx), scopes...))
	return context.WithValue(ctx, scopesKey{}, merged)
}

// ScopesFromContext returns the scopes WithScopes put in ctx, cleaned.
func ScopesFromContext(ctx context.Context) []string {
	s, _ := ctx.Value(scopesKey{}).([]string)
	return append([]string(nil), s...)
}

// WithScopesForHost is WithScopes for requests to one registry host only.
func WithScopesForHost(ctx context.Context, host string, scopes ...string) context.Context {
	key := hostScopesKey{host: strings.ToLower(host)}
	existing, _ := ctx.Value(key).([]string)
	merged := CleanScopes(append(append([]string(nil), existing...), scopes...))
	return context.WithValue(ctx, key, merged)
}

// ScopesForHost returns the scopes that requests to host made with ctx ask
// for: those of WithScopes and of WithScopesForHost for that host.
func ScopesForHost(ctx context.Context, host string) []string {
	hostScopes, _ := ctx.Value(hostScopesKey{host: strings.ToLower(host)}).([]string)
	return CleanScopes(append(ScopesFromContext(ctx), hostScopes...))
}
