package oci

import (
	"strings"
	"testing"
)

func TestSummarizePlatforms(t *testing.T) {
	many := make([]string, 0, 40)
	for i := range 40 {
		many = append(many, "linux/arch"+strings.Repeat("x", i))
	}
	tests := []struct {
		offered []string
		want    string
	}{
		{[]string{"linux/amd64", "linux/arm64"}, "linux/amd64, linux/arm64"},
		{[]string{"linux/amd64", "unknown", "linux/amd64"}, "linux/amd64 (2 times), unknown"},
		{make10000("linux/amd64"), "linux/amd64 (10000 times)"},
		{many, strings.Join(many[:maxListedPlatforms], ", ") + ", and 24 more"},
	}
	for _, tt := range tests {
		if got := summarizePlatforms(tt.offered); got != tt.want {
			t.Errorf("summarizePlatforms(%d platforms) = %.200q, want %.200q", len(tt.offered), got, tt.want)
		}
	}
}

func make10000(p string) []string {
	out := make([]string, 10000)
	for i := range out {
		out[i] = p
	}
	return out
}
