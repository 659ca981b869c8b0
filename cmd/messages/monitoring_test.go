package main

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/messages-server/messages/persist/persisttest"
)

// metricName matches the metric names a PromQL expression uses.
var metricName = regexp.MustCompile(`\b(?:messages|process|go)_[a-z0-9_]+\b`)

// TestMonitoringMetricsExist: every metric the Grafana dashboard and the
// alert rules name is on the /metrics of a running server, in cluster
// mode so that the cluster's metrics are there too: a renamed metric
// breaks this test, not a dashboard in production.
func TestMonitoringMetricsExist(t *testing.T) {
	used := map[string][]string{} // metric → where
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../../docs/monitoring/grafana/dashboards/messages.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "dashboard panel "+p.Title)
			}
		}
	}
	rules, err := os.ReadFile("../../docs/monitoring/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(rules), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		for _, m := range metricName.FindAllString(l, -1) {
			used[m] = append(used[m], "alerts.yml: "+strings.TrimSpace(l))
		}
	}
	if len(used) < 10 {
		t.Fatalf("only %d metrics found in the dashboard and the rules", len(used))
	}

	s := start(t, "-database-url", persisttest.DatabaseURL(t), "-nats-url", startNATS(t))
	do(t, "POST", s.base+"/channels", `{"id":"monitored"}`, http.StatusCreated)
	do(t, "POST", s.base+"/channels/monitored/messages", "a", http.StatusOK)
	exposed := string(do(t, "GET", s.base+"/metrics", "", http.StatusOK))
	var names []string
	for _, l := range strings.Split(exposed, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(l, "{")
		name, _, _ = strings.Cut(name, " ")
		names = append(names, name)
	}
	for m, where := range used {
		if !slices.Contains(names, m) && !slices.Contains(names, m+"_count") { // a histogram by its name
			t.Errorf("%s is not on /metrics; used by %s", m, strings.Join(where, "; "))
		}
	}
}
