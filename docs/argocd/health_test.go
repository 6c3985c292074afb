// Package argocd tests the Argo CD health check for Artifacts
// (health.lua) against its cases (health_test.yaml), running it the way
// Argo CD does: with gopher-lua, the object as a Lua table in the global
// obj, and only the libraries Argo CD opens for scripts from argocd-cm.
package argocd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// healthCases is health_test.yaml, in Argo CD's format.
type healthCases struct {
	Tests []struct {
		InputPath    string `json:"inputPath"`
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
	} `json:"tests"`
}

func loadCases(t *testing.T) healthCases {
	t.Helper()
	data, err := os.ReadFile("health_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases healthCases
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		t.Fatalf("health_test.yaml: %v", err)
	}
	if len(cases.Tests) == 0 {
		t.Fatal("health_test.yaml has no tests")
	}
	return cases
}

func loadScript(t *testing.T) string {
	t.Helper()
	script, err := os.ReadFile("health.lua")
	if err != nil {
		t.Fatal(err)
	}
	return string(script)
}

// TestHealthLua runs health.lua on every case of health_test.yaml.
func TestHealthLua(t *testing.T) {
	script := loadScript(t)
	for _, tc := range loadCases(t).Tests {
		t.Run(tc.InputPath, func(t *testing.T) {
			status, message, err := evaluateFile(script, tc.InputPath)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.HealthStatus.Status || message != tc.HealthStatus.Message {
				t.Errorf("got %s %q\nwant %s %q", status, message, tc.HealthStatus.Status, tc.HealthStatus.Message)
			}
		})
	}
}

// TestHealthCasesComplete: every input file is a case, and the cases
// cover every health the script can give.
func TestHealthCasesComplete(t *testing.T) {
	cases := loadCases(t)
	listed := map[string]bool{}
	statuses := map[string]bool{}
	for _, tc := range cases.Tests {
		if listed[tc.InputPath] {
			t.Errorf("%s is listed twice", tc.InputPath)
		}
		listed[tc.InputPath] = true
		statuses[tc.HealthStatus.Status] = true
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !listed[filepath.ToSlash(f)] {
			t.Errorf("%s is not a case in health_test.yaml", f)
		}
	}
	for _, s := range []string{"Healthy", "Progressing", "Degraded", "Suspended"} {
		if !statuses[s] {
			t.Errorf("no case expects %s", s)
		}
	}
}

// TestHarnessRejectsWrongScripts keeps the harness honest: scripts that
// are wrong, or that would fail in Argo CD, fail here.
func TestHarnessRejectsWrongScripts(t *testing.T) {
	script := loadScript(t)
	tests := []struct {
		name   string
		script string
	}{
		{"always Healthy", `return {status = "Healthy", message = ""}`},
		{"a retried failure read as Progressing", strings.Replace(script,
			`hs.status = "Degraded"
  hs.message = describe(ready)`, `hs.status = "Progressing"
  hs.message = describe(ready)`, 1)},
		// Argo CD opens no string library for scripts from argocd-cm.
		{"uses the string library", `return {status = "Healthy", message = string.format("%s", "x")}`},
		{"returns no table", `return "Healthy"`},
		{"an invalid health status", `return {status = "Fine", message = ""}`},
	}
	cases := loadCases(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.script == script {
				t.Fatal("the mutation did not change health.lua; update this test")
			}
			failures := 0
			for _, tc := range cases.Tests {
				status, message, err := evaluateFile(tt.script, tc.InputPath)
				if err != nil || status != tc.HealthStatus.Status || message != tc.HealthStatus.Message {
					failures++
				}
			}
			if failures == 0 {
				t.Error("every case passed with a wrong script")
			}
		})
	}
}

func evaluateFile(script, path string) (status, message string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	return evaluate(script, obj)
}

// evaluate runs a health script as Argo CD's lua.VM does for a script
// from argocd-cm: package, base and table libraries only, the object in
// the global obj, a table with status and message returned.
func evaluate(script string, obj map[string]any) (status, message string, err error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	// Argo CD bounds a script to one second; so do we, so that a script
	// that loops fails instead of hanging the test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, want a table", l.Get(-1).Type())
	}
	st, ok := ret.RawGetString("status").(lua.LString)
	if !ok {
		return "", "", fmt.Errorf("the returned table has no string status")
	}
	if !slices.Contains([]string{"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}, string(st)) {
		return "", "", fmt.Errorf("status %q is not one Argo CD knows", st)
	}
	msg := ret.RawGetString("message")
	if msg != lua.LNil {
		if _, ok := msg.(lua.LString); !ok {
			return "", "", fmt.Errorf("message is a %s, want a string", msg.Type())
		}
		message = msg.String()
	}
	return string(st), message, nil
}

// toLua converts decoded JSON as Argo CD's decodeValue does: numbers of
// any kind become Lua numbers.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
