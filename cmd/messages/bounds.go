package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/messages-server/messages/ws"
)

// envFuncs read a flag's environment fallback; parse errors are collected
// by parseConfig.
type envFuncs struct {
	str func(name, def string) string
	dur func(name string, def time.Duration) time.Duration
	num func(name string, def int) int
}

// bounds are the timeouts, memory bounds and quotas that make the server
// safe to expose.
type bounds struct {
	bodyTimeout        time.Duration
	storeTimeout       time.Duration
	persistWaitTimeout time.Duration
	readHeaderTimeout  time.Duration
	idleTimeout        time.Duration
}

func (b *bounds) define(fs *flag.FlagSet, env envFuncs) {
	fs.DurationVar(&b.bodyTimeout, "body-timeout", env.dur("BODY_TIMEOUT", 30*time.Second), "a request body must arrive within this, else 408 (env BODY_TIMEOUT)")
	fs.DurationVar(&b.storeTimeout, "store-timeout", env.dur("STORE_TIMEOUT", 5*time.Second), "bound on each database call made for a request, else 503 (env STORE_TIMEOUT)")
	fs.DurationVar(&b.persistWaitTimeout, "persist-wait-timeout", env.dur("PERSIST_WAIT_TIMEOUT", 30*time.Second), "longest an append with ?wait=persisted waits, else 504 with its seq (env PERSIST_WAIT_TIMEOUT)")
	fs.DurationVar(&b.readHeaderTimeout, "read-header-timeout", env.dur("READ_HEADER_TIMEOUT", 10*time.Second), "request headers must arrive within this (env READ_HEADER_TIMEOUT)")
	fs.DurationVar(&b.idleTimeout, "idle-timeout", env.dur("IDLE_TIMEOUT", 2*time.Minute), "an idle keep-alive connection is closed after this (env IDLE_TIMEOUT)")
}

func (b *bounds) validate() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"body timeout", b.bodyTimeout}, {"store timeout", b.storeTimeout}, {"persist wait timeout", b.persistWaitTimeout},
		{"read header timeout", b.readHeaderTimeout}, {"idle timeout", b.idleTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	return errs
}

// hub sets the hub's part of the bounds in c.
func (b *bounds) hub(c *ws.HubConfig) {
	c.StoreTimeout = b.storeTimeout
	c.PersistWaitTimeout = b.persistWaitTimeout
}

// server sets the server's part of the bounds in c.
func (b *bounds) server(c *ws.ServerConfig) {
	c.BodyTimeout = b.bodyTimeout
}
