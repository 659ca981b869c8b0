package main

import (
	"errors"
	"flag"
)

// historyConfig is the configuration of the history pages that catch-ups
// read from the store and share through the hub's cache.
type historyConfig struct {
	cacheBytes byteSize // 0 disables the cache
	page       int
}

func addHistoryFlags(fs *flag.FlagSet, c *historyConfig, env envVars) {
	c.cacheBytes = env.size("HISTORY_CACHE_BYTES", 64<<20)
	fs.Var(&c.cacheBytes, "history-cache-bytes", "`size` of the encoded history pages kept in memory for catch-ups to share, within -max-buffered-bytes, e.g. 64MiB; 0 disables the cache (env HISTORY_CACHE_BYTES)")
	fs.IntVar(&c.page, "history-page", env.num("HISTORY_PAGE", 1000), "messages per history page: per store read of a catch-up, and per cached page (env HISTORY_PAGE)")
}

// check returns what is wrong with c, or nil.
func (c historyConfig) check() error {
	var errs []error
	if c.cacheBytes < 0 {
		errs = append(errs, errors.New("history cache bytes must not be negative (0 disables the cache)"))
	}
	if c.page < 1 || c.page > 100_000 {
		errs = append(errs, errors.New("history page must be in [1, 100000] messages"))
	}
	return errors.Join(errs...)
}

// hubCacheBytes maps the flag, where 0 disables the cache, to
// hub.Config.HistoryCacheBytes, where 0 means the default and a negative
// value disables it.
func (c historyConfig) hubCacheBytes() int64 {
	if c.cacheBytes == 0 {
		return -1
	}
	return int64(c.cacheBytes)
}
