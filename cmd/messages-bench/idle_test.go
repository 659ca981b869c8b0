package main

import (
	"strings"
	"testing"
)

func TestPerConn(t *testing.T) {
	const mib = 1 << 20
	sample := func(rssMiB, heapMiB float64) serverSample {
		return serverSample{rss: rssMiB * mib, heap: heapMiB * mib}
	}
	tests := []struct {
		name                    string
		open                    serverSample
		without                 []serverSample
		rss, heap               float64 // MiB per connection
		rssInvalid, heapInvalid bool
	}{
		{"growth", sample(30, 20), []serverSample{sample(10, 4), sample(29, 19)}, 20.0 / 1000, 16.0 / 1000, false, false},
		{"heap shrank during the run: the closed baseline counts",
			sample(30, 8), []serverSample{sample(10, 10), sample(30, 6)}, 20.0 / 1000, 2.0 / 1000, false, false},
		{"no baseline below the open sample: invalid, not negative",
			sample(30, 8), []serverSample{sample(10, 10), sample(30, 9)}, 20.0 / 1000, 0, false, true},
		{"nothing grew", sample(10, 10), []serverSample{sample(10, 10), sample(10, 10)}, 0, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := perConn(tt.open, tt.without, 1000)
			if c.rss != tt.rss*mib || c.heap != tt.heap*mib || c.rssInvalid != tt.rssInvalid || c.heapInvalid != tt.heapInvalid {
				t.Errorf("got rss %.0f B (invalid %v), heap %.0f B (invalid %v); want %.0f B (%v), %.0f B (%v)",
					c.rss, c.rssInvalid, c.heap, c.heapInvalid, tt.rss*mib, tt.rssInvalid, tt.heap*mib, tt.heapInvalid)
			}
			if c.rss < 0 || c.heap < 0 {
				t.Errorf("negative cost: %+v", c)
			}
			if invalid := tt.rssInvalid || tt.heapInvalid; invalid != (len(c.notes) > 0) {
				t.Errorf("notes %q, want one per invalid figure", c.notes)
			}
		})
	}
}

func TestTableShowsInvalidPerConn(t *testing.T) {
	r := &result{Scenario: "idle", Clients: 10, Server: serverCost{Available: true, RSSPerConn: 2048, HeapPerConnInvalid: true}}
	var b strings.Builder
	r.writeTable(&b)
	if !strings.Contains(b.String(), "2.0 KiB RSS, invalid (see the notes) heap in use") {
		t.Errorf("per connection row:\n%s", b.String())
	}
}
