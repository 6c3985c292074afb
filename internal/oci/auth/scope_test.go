package auth

import (
	"context"
	"reflect"
	"testing"
)

func TestRepositoryScope(t *testing.T) {
	tests := []struct {
		repo    string
		actions []string
		want    string
	}{
		{"team/app", []string{"pull"}, "repository:team/app:pull"},
		{"team/app", []string{"push", "pull", "pull"}, "repository:team/app:pull,push"},
		{"app", []string{"pull", "*"}, "repository:app:*"},
		{"app", nil, ""},
		{"", []string{"pull"}, ""},
	}
	for _, tt := range tests {
		if got := RepositoryScope(tt.repo, tt.actions...); got != tt.want {
			t.Errorf("RepositoryScope(%q, %v) = %q, want %q", tt.repo, tt.actions, got, tt.want)
		}
	}
}

func TestCleanScopes(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"merge actions of one repository", []string{"repository:a:pull", "repository:a:push", "repository:b:pull"},
			[]string{"repository:a:pull,push", "repository:b:pull"}},
		{"space-separated challenge scope", []string{"repository:a:pull repository:b:push", "repository:a:delete"},
			[]string{"repository:a:delete,pull", "repository:b:push"}},
		{"star wins", []string{"repository:a:pull", "repository:a:*"}, []string{"repository:a:*"}},
		{"opaque kept verbatim", []string{"aws", "repository:a:pull", "aws", "x:y"}, []string{"aws", "repository:a:pull", "x:y"}},
		{"name with a colon (host:port)", []string{"repository:h:5000/a:pull", "repository:h:5000/a:push"}, []string{"repository:h:5000/a:pull,push"}},
		{"no actions dropped, empty strings ignored", []string{"repository:a:", "", "  "}, []string{}},
		{"catalog", []string{ScopeRegistryCatalog}, []string{"registry:catalog:*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanScopes(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("CleanScopes(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestScopeContext(t *testing.T) {
	ctx := context.Background()
	if got := ScopesFromContext(ctx); len(got) != 0 {
		t.Fatalf("empty context has scopes %v", got)
	}
	ctx = WithScopes(ctx, RepositoryScope("a", "pull"), "")
	ctx = WithScopes(ctx, RepositoryScope("a", "push"))
	ctx = WithScopesForHost(ctx, "Reg.example.com", RepositoryScope("b", "pull"))
	if got, want := ScopesFromContext(ctx), []string{"repository:a:pull,push"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ScopesFromContext = %v, want %v", got, want)
	}
	if got, want := ScopesForHost(ctx, "reg.example.com"), []string{"repository:a:pull,push", "repository:b:pull"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ScopesForHost(reg) = %v, want %v", got, want)
	}
	if got, want := ScopesForHost(ctx, "other.example.com"), []string{"repository:a:pull,push"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ScopesForHost(other) = %v, want %v", got, want)
	}
	// The returned slice is a copy.
	s := ScopesFromContext(ctx)
	s[0] = "mutated"
	if ScopesFromContext(ctx)[0] == "mutated" {
		t.Fatal("ScopesFromContext returned the context's own slice")
	}
}
