package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestArchitectureNamesRun checks that docs/ARCHITECTURE.md gives run's
// parameters as main.go declares them.
func TestArchitectureNamesRun(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^func run\(ctx context\.Context, args \[\]string, getenv func\(string\) string, stderr io\.Writer, ready chan<- string\)`).Find(src)
	if m == nil {
		t.Fatal("run's signature in main.go changed: update this test and docs/ARCHITECTURE.md")
	}
	doc, err := os.ReadFile("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "`run(ctx, args, getenv, stderr, ready)`") {
		t.Error("docs/ARCHITECTURE.md does not name run(ctx, args, getenv, stderr, ready)")
	}
}
