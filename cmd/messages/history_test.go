package main

import (
	"io"
	"testing"
)

// TestHistoryFlags: the history cache and page flags, their defaults, 0
// disabling the cache, and out-of-range values refused.
func TestHistoryFlags(t *testing.T) {
	c, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil || c.history.cacheBytes != 64<<20 || c.history.page != 1000 || c.history.hubCacheBytes() != 64<<20 {
		t.Fatalf("defaults: cache %d, page %d, %v", c.history.cacheBytes, c.history.page, err)
	}
	c, err = parseConfig([]string{"-history-cache-bytes", "0", "-history-page", "50"}, noEnv, io.Discard)
	if err != nil || c.history.hubCacheBytes() >= 0 || c.history.page != 50 {
		t.Fatalf("-history-cache-bytes 0 gives %d, page %d, %v; want the cache disabled", c.history.hubCacheBytes(), c.history.page, err)
	}
	env := func(k string) string {
		return map[string]string{"HISTORY_CACHE_BYTES": "1048576", "HISTORY_PAGE": "2000"}[k]
	}
	if c, err = parseConfig(nil, env, io.Discard); err != nil || c.history.cacheBytes != 1<<20 || c.history.page != 2000 {
		t.Fatalf("from the environment: cache %d, page %d, %v", c.history.cacheBytes, c.history.page, err)
	}
	for _, args := range [][]string{{"-history-cache-bytes", "-1"}, {"-history-page", "0"}, {"-history-page", "100001"}} {
		if _, err := parseConfig(args, noEnv, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
