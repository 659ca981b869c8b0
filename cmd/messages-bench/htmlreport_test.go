package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/messages-server/messages/ws/wstest"
)

// TestHTMLReport: -report writes one self-contained HTML file (nothing
// fetched: no script, style sheet, font or image from elsewhere) with the
// verdict and the latency, throughput, CPU and memory plots, each drawn
// with data.
func TestHTMLReport(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	path := filepath.Join(t.TempDir(), "report.html")
	runBench(t, srv.URL, "-scenario", "reference", "-channels", "10", "-clients", "3", "-freq", "100", "-max", "150",
		"-progress", "200ms", "-report", path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url(", "<link"} {
		if strings.Contains(page, bad) {
			t.Errorf("the report is not self-contained: it has %q", bad)
		}
	}
	if !strings.Contains(page, "PASS: 30 clients") {
		t.Errorf("the report lacks the verdict")
	}
	plots := regexp.MustCompile(`data-plot="([a-z-]+)" data-points="(\d+)"`).FindAllStringSubmatch(page, -1)
	got := map[string]int{}
	for _, p := range plots {
		got[p[1]], _ = strconv.Atoi(p[2])
	}
	for _, k := range []string{"latency", "throughput", "server-cpu", "server-memory"} {
		if got[k] < 2 {
			t.Errorf("plot %s has %d points, want some", k, got[k])
		}
	}
	if t.Failed() {
		t.Logf("plots: %v", got)
	}
}

// TestJSONDurationsInSeconds: -json gives the configuration's durations in
// seconds.
func TestJSONDurationsInSeconds(t *testing.T) {
	b, err := config{Window: 1500 * 1e6, Duration: 10 * 1e9}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "_ns") || !strings.Contains(s, `"window_seconds":1.5`) || !strings.Contains(s, `"duration_seconds":10`) {
		t.Errorf("config JSON: %s", s)
	}
}
