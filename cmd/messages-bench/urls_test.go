package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/messages-server/messages/ws/wstest"
)

func TestSeveralURLs(t *testing.T) {
	c, err := parseFlags([]string{"-scenario", "fanout", "-clients", "7",
		"-url", "http://127.0.0.1:3001, http://127.0.0.1:3002/,http://127.0.0.1:3003"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://127.0.0.1:3001", "http://127.0.0.1:3002", "http://127.0.0.1:3003"}
	if !slices.Equal(c.URLs, want) || c.URL != want[0] {
		t.Fatalf("URLs %q, URL %q; want %q and the first", c.URLs, c.URL, want)
	}
	var got []string
	for k := range 4 {
		got = append(got, c.readerURL(k))
	}
	if !slices.Equal(got, append(want, want[0])) {
		t.Fatalf("readers' URLs %q: want them in turn", got)
	}
	if n := c.readersOnFirst(); n != 3 { // readers 0, 3 and 6 of 7
		t.Fatalf("readersOnFirst = %d, want 3", n)
	}
	_, err = parseFlags([]string{"-url", "http://127.0.0.1:3001,ftp://x"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"ftp://x"`) {
		t.Fatalf("a bad URL in the list: %v, want an error naming it", err)
	}
}

// countingProxy forwards to target and counts the requests whose path
// starts with prefix.
func countingProxy(t *testing.T, target, prefix string) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) {
			n.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

// TestReadersUseEveryURL: the catchup scenario's readers and the
// reference scenario's SSE readers are spread over every -url, as the
// other scenarios' readers are.
func TestReadersUseEveryURL(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	for _, tc := range []struct {
		name, prefix string
		args         []string
	}{
		{"catchup", "/ws", []string{"-scenario", "catchup", "-clients", "10", "-history", "300"}},
		{"sse", "/v1/stream/", []string{"-scenario", "reference", "-channels", "2", "-clients", "5", "-freq", "200",
			"-max", "20", "-transport", "sse"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy, n := countingProxy(t, srv.URL, tc.prefix)
			r := runBench(t, srv.URL+","+proxy, append(tc.args, "-prefix", tc.name+"-")...)
			if r.Completed != r.Clients || r.Clients != 10 {
				t.Fatalf("%d of %d readers completed, want all 10", r.Completed, r.Clients)
			}
			if got := n.Load(); got < 4 {
				t.Fatalf("%d requests to %s through the second URL, want about half of the 10 readers'", got, tc.prefix)
			}
		})
	}
}

// TestMetricsURL: -metrics-url is where the bench reads the server's cost,
// for a server that serves its metrics apart from the API.
func TestMetricsURL(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	var n atomic.Int64
	metrics := promhttp.HandlerFor(srv.Registry, promhttp.HandlerOpts{})
	aside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		metrics.ServeHTTP(w, r)
	}))
	defer aside.Close()
	r := runBench(t, srv.URL, "-scenario", "catchup", "-clients", "3", "-history", "10", "-metrics-url", aside.URL+"/m")
	if n.Load() < 2 || r.Config.MetricsURL != aside.URL+"/m" {
		t.Fatalf("%d scrapes of -metrics-url (config %q), want the run's", n.Load(), r.Config.MetricsURL)
	}
	if c, err := parseFlags([]string{"-url", "http://127.0.0.1:3001,http://127.0.0.1:3002"}, func(string) string { return "" }, io.Discard); err != nil ||
		c.MetricsURL != "http://127.0.0.1:3001/metrics" {
		t.Fatalf("default metrics URL %q (%v), want the first URL's /metrics", c.MetricsURL, err)
	}
}
