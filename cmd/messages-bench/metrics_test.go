package main

import (
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 1.048576e+07
go_memstats_heap_inuse_bytes{extra="label"} 99
go_memstats_heap_inuse_bytes 4096 1764300000000
process_resident_memory_bytes_other 7
messages_delivered_total{channel="x"} 3
# TYPE messages_publish_seconds histogram
messages_publish_seconds_bucket{le="0.1"} 2
messages_publish_seconds_bucket{le="+Inf"} 3
messages_publish_seconds_sum 0.4
messages_publish_seconds_count 3
`
	got, err := parseMetrics(strings.NewReader(text), metricCPU, metricRSS, metricHeap)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{metricCPU: 12.5, metricRSS: 10485760, metricHeap: 4096}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// A histogram's _sum and _count, as the many scenario reads them.
	got, err = parseMetrics(strings.NewReader(text), "messages_publish_seconds_sum", "messages_publish_seconds_count")
	if err != nil || got["messages_publish_seconds_sum"] != 0.4 || got["messages_publish_seconds_count"] != 3 {
		t.Errorf("histogram samples: %v, %v; want _sum 0.4 and _count 3", got, err)
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total abc\n"), metricCPU); err == nil {
		t.Error("a bad number was accepted")
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total NaN\n"), metricCPU); err == nil {
		t.Error("NaN was accepted")
	}
}

func TestParseFlags(t *testing.T) {
	env := func(string) string { return "" }
	c, err := parseFlags([]string{"-scenario", "reference", "-seed", "7"}, env, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Channels != 1000 || c.Clients != 5 || c.Freq != 20 || c.Max != 50 || c.URL != "http://127.0.0.1:3000" ||
		c.Window.Seconds() != 3.75 || c.Transport != "ws" || c.Prefix != "bench-7-" {
		t.Errorf("reference defaults: %+v", c)
	}
	c, err = parseFlags(nil, func(string) string { return "http://127.0.0.1:9/" }, &strings.Builder{})
	if err != nil || c.URL != "http://127.0.0.1:9" {
		t.Errorf("url from the environment: %q, %v", c.URL, err)
	}
	for _, bad := range [][]string{
		{"-scenario", "nope"}, {"-transport", "udp"}, {"-resume-fraction", "2"}, {"-url", "ftp://x"},
		{"-channels", "-1"}, {"-scenario", "publish", "-rate", "0"}, {"extra"},
	} {
		if _, err := parseFlags(bad, env, &strings.Builder{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
