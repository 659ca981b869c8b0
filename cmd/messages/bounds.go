package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/hub"
)

// bounds are the timeouts, memory bounds and quotas that make the server
// safe to expose.
type bounds struct {
	bodyTimeout        time.Duration
	storeTimeout       time.Duration
	persistWaitTimeout time.Duration
	readHeaderTimeout  time.Duration
	idleTimeout        time.Duration
	maxBufferedBytes   byteSize
	maxChannelBytes    byteSize
	maxCatchupBytes    byteSize
	maxOpenChannels    int
	maxGeneratorRate   float64
	maxConnsPerIP      int
	createRate         float64
	createBurst        int
	trustedProxies     string
	idleEvict          time.Duration
}

func (b *bounds) define(fs *flag.FlagSet, env envVars) {
	fs.DurationVar(&b.bodyTimeout, "body-timeout", env.dur("BODY_TIMEOUT", 30*time.Second), "a request body must arrive within this, else 408 (env BODY_TIMEOUT)")
	fs.DurationVar(&b.storeTimeout, "store-timeout", env.dur("STORE_TIMEOUT", 5*time.Second), "bound on each database call made for a request, else 503 (env STORE_TIMEOUT)")
	fs.DurationVar(&b.persistWaitTimeout, "persist-wait-timeout", env.dur("PERSIST_WAIT_TIMEOUT", 30*time.Second), "longest an append with ?wait=persisted waits, else 504 with its seq (env PERSIST_WAIT_TIMEOUT)")
	fs.DurationVar(&b.readHeaderTimeout, "read-header-timeout", env.dur("READ_HEADER_TIMEOUT", 10*time.Second), "request headers must arrive within this (env READ_HEADER_TIMEOUT)")
	fs.DurationVar(&b.idleTimeout, "idle-timeout", env.dur("IDLE_TIMEOUT", 2*time.Minute), "an idle keep-alive connection is closed after this (env IDLE_TIMEOUT)")
	fs.DurationVar(&b.idleEvict, "idle-evict", env.dur("IDLE_EVICT", 5*time.Minute), "an open channel with no subscriber, no generator and no request for this long leaves memory until it is used again (env IDLE_EVICT)")
	b.maxBufferedBytes = env.size("MAX_BUFFERED_BYTES", 256<<20)
	fs.Var(&b.maxBufferedBytes, "max-buffered-bytes", "`size` of the memory for messages held by all channels, unpersisted and retained, at real cost, and for the history page cache (e.g. 256MiB); the cache gives way first; past it appends get 503 and generators pause (env MAX_BUFFERED_BYTES)")
	b.maxChannelBytes = env.size("MAX_CHANNEL_BYTES", 16<<20)
	fs.Var(&b.maxChannelBytes, "max-channel-bytes", "`size` bound of the same memory for one channel (env MAX_CHANNEL_BYTES)")
	b.maxCatchupBytes = env.size("MAX_CATCHUP_BYTES", 64<<20)
	fs.Var(&b.maxCatchupBytes, "max-catchup-bytes", "`size` of the data of one Durable Streams catch-up response, which otherwise holds everything up to the tail as of the request; past it the response ends early and the client reads on from Stream-Next-Offset (env MAX_CATCHUP_BYTES)")
	fs.IntVar(&b.maxOpenChannels, "max-open-channels", env.num("MAX_OPEN_CHANNELS", 100_000), "channels open in memory at once; past it creates and take-overs get 429 (env MAX_OPEN_CHANNELS)")
	fs.Float64Var(&b.maxGeneratorRate, "max-generator-rate", env.float("MAX_GENERATOR_RATE", 100_000), "lines per second of all running generators together; past it creating a generator gets 429 (env MAX_GENERATOR_RATE)")
	fs.IntVar(&b.maxConnsPerIP, "max-conns-per-ip", env.num("MAX_CONNS_PER_IP", 10_000), "WebSockets, streaming responses and requests whose body is still arriving, at once per client IP; past it 429 (env MAX_CONNS_PER_IP)")
	fs.Float64Var(&b.createRate, "create-rate", env.float("CREATE_RATE", 1000), "channel creations per second per client IP; past it 429 (env CREATE_RATE)")
	fs.IntVar(&b.createBurst, "create-burst", env.num("CREATE_BURST", 2000), "channel creations per client IP allowed at once before -create-rate applies (env CREATE_BURST)")
	fs.StringVar(&b.trustedProxies, "trusted-proxies", env.str("TRUSTED_PROXIES", ""), "comma-separated CIDRs of proxies whose X-Forwarded-For names the client, e.g. 10.0.0.0/8 (env TRUSTED_PROXIES)")
}

func (b *bounds) validate() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"body timeout", b.bodyTimeout}, {"store timeout", b.storeTimeout}, {"persist wait timeout", b.persistWaitTimeout},
		{"read header timeout", b.readHeaderTimeout}, {"idle timeout", b.idleTimeout}, {"idle evict", b.idleEvict},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	if b.maxBufferedBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("max buffered bytes must be at least 1MiB"))
	}
	if b.maxChannelBytes < 64<<10 || b.maxChannelBytes > b.maxBufferedBytes {
		errs = append(errs, fmt.Errorf("max channel bytes must be in [64KiB, max buffered bytes]"))
	}
	if b.maxCatchupBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("max catch-up bytes must be at least 64KiB"))
	}
	for _, q := range []struct {
		name string
		v    float64
	}{
		{"max open channels", float64(b.maxOpenChannels)}, {"max generator rate", b.maxGeneratorRate},
		{"max conns per IP", float64(b.maxConnsPerIP)}, {"create rate", b.createRate}, {"create burst", float64(b.createBurst)},
	} {
		if !(q.v > 0) {
			errs = append(errs, fmt.Errorf("%s must be positive", q.name))
		}
	}
	if _, err := b.proxies(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// proxies parses the trusted proxies.
func (b *bounds) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range splitList(b.trustedProxies) {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("trusted proxy %q: not a CIDR (10.0.0.0/8) or an address", v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// hub sets the hub's part of the bounds in c.
func (b *bounds) hub(c *hub.Config) {
	c.StoreTimeout = b.storeTimeout
	c.PersistWaitTimeout = b.persistWaitTimeout
	c.MaxBufferedBytes = int64(b.maxBufferedBytes)
	c.MaxChannelBytes = int64(b.maxChannelBytes)
	c.MaxOpenChannels = b.maxOpenChannels
	c.MaxGeneratorRate = b.maxGeneratorRate
	c.IdleEvict = b.idleEvict
}

// server sets the server's part of the bounds in c.
func (b *bounds) server(c *ws.ServerConfig) {
	c.BodyTimeout = b.bodyTimeout
	c.MaxConnsPerIP = b.maxConnsPerIP
	c.CreateRate = b.createRate
	c.CreateBurst = b.createBurst
	c.MaxCatchupBytes = int64(b.maxCatchupBytes)
	c.TrustedProxies, _ = b.proxies() // validated by parseConfig
}

// byteSize is a flag.Value for a number of bytes: an integer, optionally
// followed by KiB, MiB or GiB.
type byteSize int64

func (b *byteSize) String() string {
	switch n := int64(*b); {
	case n != 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return strconv.FormatInt(n, 10)
	}
}

// Set parses s.
func (b *byteSize) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return fmt.Errorf("not a size: use bytes, or a number with KiB, MiB or GiB")
	}
	*b = byteSize(n * mult)
	return nil
}
