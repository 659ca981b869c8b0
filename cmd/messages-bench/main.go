// Command messages-bench stress-tests a messages server and verifies what
// every client receives: each client's stream must equal the original byte
// for byte, with contiguous seqs and no duplicate. It exits non-zero when
// any client got a different stream or failed.
//
// Scenarios (-scenario):
//
//   - reference: -channels channels started with the server generator
//     (POST /?freq=&max=, whose streamed answer is the original), -clients
//     readers per channel joining at random times over -window, reading
//     over WebSocket, HTTP or both (-transport); -resume-fraction of the
//     WebSocket readers drop at a random seq and resume with from.
//   - fanout: channels with a generator at -freq for -duration, -clients
//     WebSocket subscribers each, subscribed as the channels start.
//   - publish: the bench appends at -rate messages/s in total (open loop,
//     latency from the intended send time) over -conns HTTP connections to
//     -channels channels with -clients subscribers each.
//   - idle: -channels × -clients idle subscribers; reports the server's
//     memory per connection.
//   - catchup: one channel with -history messages of -size bytes, closed
//     (-source closed: served from the store, as after a restart) or open;
//     then -clients readers join at once and read it all. Reports the time
//     until all are done, per-reader catch-up latency and MB/s. A frame
//     another reader already checked is checked by its bytes.
//   - create: -channels channels created (without generator) by -conns
//     concurrent clients (default 64), through POST /channels or Durable
//     Streams PUT (-create-api); reports creations per second and the
//     latency of each creation.
//   - many: -channels channels with a generator at -freq each and no
//     subscriber (ten times the reference load: 10,000 at 20 lines/s).
//     Reports lines appended and persisted per second and the persist lag
//     over time, from the server's /metrics.
//
// Server cost comes from the server's /metrics (or -metrics-url).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/messages-server/messages/internal/cli"
)

func main() {
	cli.Run("messages-bench", func(ctx context.Context) error {
		return run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	})
}

// config holds the flags.
type config struct {
	URL            string        `json:"url"`         // the first of URLs: creates, producers, metrics
	URLs           []string      `json:"urls"`        // readers are spread over them
	MetricsURL     string        `json:"metrics_url"` // the server's metrics: URL + "/metrics" unless set
	Scenario       string        `json:"scenario"`
	Channels       int           `json:"channels"`
	Clients        int           `json:"clients"`
	Freq           float64       `json:"freq"`
	Max            int64         `json:"max"`
	Window         time.Duration `json:"window_ns"`
	Transport      string        `json:"transport"`
	ResumeFraction float64       `json:"resume_fraction"`
	Duration       time.Duration `json:"duration_ns"`
	Rate           float64       `json:"rate"`
	Conns          int           `json:"conns"`
	JSON           bool          `json:"json"`
	Seed           uint64        `json:"seed"`
	Timeout        time.Duration `json:"timeout_ns"`
	Progress       time.Duration `json:"progress_ns"`
	Prefix         string        `json:"prefix"`
	CreateAPI      string        `json:"create_api,omitempty"`
	CPUProfile     string        `json:"-"`
	maxSet         bool          // -max was given
	Token          string        `json:"-"` // never printed
	catchupFlags
	reportFlags
}

// readerURL is the server base URL of reader k: readers are spread over
// the URLs in turn.
func (c config) readerURL(k int) string { return c.URLs[k%len(c.URLs)] }

// channelID is the id of the run's channel n: -prefix, then n.
func (c config) channelID(n int) string { return c.Prefix + strconv.Itoa(n) }

// readersOnFirst is how many of a channel's readers use the first URL.
func (c config) readersOnFirst() int { return (c.Clients + len(c.URLs) - 1) / len(c.URLs) }

// parseFlags reads args into a config; getenv supplies
// MESSAGES_BENCH_URL as the default -url and MESSAGES_TOKEN as the default
// -token.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("messages-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.addFlags(fs, getenv)
	if err := cli.Parse(fs, args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { c.maxSet = c.maxSet || f.Name == "max" })
	if err := c.setDefaults(); err != nil {
		return c, err
	}
	if err := c.splitURLs(); err != nil {
		return c, err
	}
	if err := c.check(); err != nil {
		return c, err
	}
	if err := c.checkCatchup(); err != nil {
		return c, err
	}
	if c.Window == 0 && c.Scenario == "reference" {
		c.Window = time.Duration(float64(c.Max) / c.Freq * 1.5 * float64(time.Second))
	}
	if c.Conns == 0 {
		c.Conns = c.Channels
		if c.Scenario == "create" {
			c.Conns = 64
		}
	}
	return c, nil
}

// addFlags defines the flags of c on fs, with defaults from getenv.
func (c *config) addFlags(fs *flag.FlagSet, getenv func(string) string) {
	defURL := getenv("MESSAGES_BENCH_URL")
	if defURL == "" {
		defURL = "http://127.0.0.1:3000"
	}
	fs.StringVar(&c.URL, "url", defURL, "server base URL, or several comma-separated (the nodes of a cluster): channels are created, written and measured through the first, readers are spread over all (env MESSAGES_BENCH_URL)")
	fs.StringVar(&c.MetricsURL, "metrics-url", getenv("MESSAGES_BENCH_METRICS_URL"), "the server's Prometheus metrics, where its cost is read (default: the first -url + /metrics; set it for a server started with -metrics-addr) (env MESSAGES_BENCH_METRICS_URL)")
	fs.StringVar(&c.Token, "token", getenv("MESSAGES_TOKEN"), "bearer token for a server that requires one, sent on every request and WebSocket; it needs the rights of the scenario, e.g. messages-token -admin (env MESSAGES_TOKEN; prefer the env, flags show in ps)")
	fs.StringVar(&c.Scenario, "scenario", "reference", "reference, fanout, publish, idle, catchup, create or many")
	fs.IntVar(&c.Channels, "channels", 0, "channels (default: reference 1000, fanout and publish 100, idle 100, create and many 10000)")
	fs.IntVar(&c.Clients, "clients", 0, "clients per channel (default: reference 5, fanout and publish 100, idle 100)")
	fs.Float64Var(&c.Freq, "freq", 0, "generator lines per second (default: reference 20, fanout 100, many 20)")
	fs.Int64Var(&c.Max, "max", 50, "reference, many: lines per channel (many: by default enough to outlive -timeout)")
	fs.DurationVar(&c.Window, "window", 0, "reference: readers join over this window (default: the stream's duration × 1.5)")
	fs.StringVar(&c.Transport, "transport", "ws", "reference: readers use ws, http (GET /?id=), sse (Durable Streams) or mixed (all three)")
	fs.Float64Var(&c.ResumeFraction, "resume-fraction", 0, "reference: fraction of WebSocket readers that drop at a random seq and resume")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "fanout, publish: how long the producers run; idle: how long the connections are held; many: how long it measures once the channels are created")
	fs.Float64Var(&c.Rate, "rate", 10000, "publish: messages per second appended, in total")
	fs.IntVar(&c.Conns, "conns", 0, "publish: HTTP connections for appends (default: one per channel); create: concurrent clients (default 64)")
	fs.StringVar(&c.CreateAPI, "create-api", "channels", "create: POST /channels (channels) or Durable Streams PUT (streams)")
	fs.BoolVar(&c.JSON, "json", false, "write the result as one JSON object on stdout (the table goes to stderr)")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed (default: from the clock); printed so a run can be repeated")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "stop everything after this long")
	fs.DurationVar(&c.Progress, "progress", time.Second, "interval of the progress line on stderr (0: none)")
	fs.StringVar(&c.Prefix, "prefix", "", "channel id prefix (default: bench-<seed>-)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the bench's own CPU profile to this file")
	c.catchupFlags.addFlags(fs)
	c.reportFlags.addFlags(fs)
}

// setDefaults fills in the scenario's defaults for the flags left at 0,
// the seed and the channel prefix.
func (c *config) setDefaults() error {
	defaults := map[string][3]float64{ // channels, clients, freq
		"reference": {1000, 5, 20}, "fanout": {100, 100, 100}, "publish": {100, 100, 0}, "idle": {100, 100, 0},
		"catchup": {1, 1000, 0}, "create": {10000, 0, 0}, "many": {10000, 0, 20},
	}
	d, ok := defaults[c.Scenario]
	if !ok {
		return fmt.Errorf("unknown -scenario %q: want reference, fanout, publish, idle, catchup, create or many", c.Scenario)
	}
	if c.Channels == 0 {
		c.Channels = int(d[0])
	}
	if c.Clients == 0 {
		c.Clients = int(d[1])
	}
	if c.Freq == 0 {
		c.Freq = d[2]
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Prefix == "" {
		c.Prefix = fmt.Sprintf("bench-%d-", c.Seed)
	}
	return nil
}

// splitURLs reads -url into URLs, and sets URL to the first and the
// default MetricsURL.
func (c *config) splitURLs() error {
	c.URLs = nil
	for s := range strings.SplitSeq(c.URL, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-url %q: want http://host:port, or several comma-separated", s)
		}
		c.URLs = append(c.URLs, strings.TrimSuffix(s, "/"))
	}
	c.URL = c.URLs[0]
	if c.MetricsURL == "" {
		c.MetricsURL = c.URL + "/metrics"
	}
	return nil
}

// check refuses flags out of range, or that the scenario cannot use.
func (c *config) check() error {
	switch {
	case c.Channels < 1 || c.Clients < 0:
		return errors.New("-channels must be at least 1 and -clients at least 0")
	case c.Channels*c.Clients > 1_000_000:
		return errors.New("more than a million clients")
	case c.Scenario == "reference" && (c.Freq <= 0 || c.Max < 1):
		return errors.New("-freq and -max must be positive")
	case (c.Scenario == "fanout" || c.Scenario == "many") && (c.Freq <= 0 || c.Duration <= 0):
		return errors.New("-freq and -duration must be positive")
	case c.Scenario == "publish" && (c.Rate <= 0 || c.Duration <= 0 || c.Conns < 0):
		return errors.New("-rate and -duration must be positive")
	case c.Transport != "ws" && c.Transport != "http" && c.Transport != "sse" && c.Transport != "mixed":
		return fmt.Errorf("-transport %q: want ws, http, sse or mixed", c.Transport)
	case c.ResumeFraction < 0 || c.ResumeFraction > 1:
		return errors.New("-resume-fraction must be within 0..1")
	case c.CreateAPI != "channels" && c.CreateAPI != "streams":
		return fmt.Errorf("-create-api %q: want channels or streams", c.CreateAPI)
	case c.Timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	return nil
}

// bench is what a scenario runs with.
type bench struct {
	cfg    config
	src    *sources
	st     *stats
	rng    *rand.Rand // used by the scenario's setup goroutine only
	stderr io.Writer
	res    *result
}

// run parses args, runs the scenario and writes the report to stdout (and
// progress to stderr). It returns an error when the run failed, when any
// client failed, or when any stream differed from the original. With -h it
// prints the usage to stderr and returns nil; a bad flag is printed to
// stderr, with the usage, and returned as a cli.UsageError.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	limit, err := raiseFileLimit()
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
	}
	st := newStats(cfg.Timeout + time.Minute)
	src, err := newSources(cfg.URL, cfg.Token, &st.throttled)
	if err != nil {
		return err
	}
	defer src.close()
	params, _ := json.Marshal(cfg)
	fmt.Fprintf(stderr, "messages-bench %s: %s (open files limit %d)\n", cfg.Scenario, params, limit)

	b := &bench{cfg: cfg, src: src, st: st, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6d657373)), stderr: stderr}
	b.res = &result{Scenario: cfg.Scenario, Config: cfg, Started: b.st.start}
	mon := startMonitor(ctx, b)
	switch cfg.Scenario {
	case "reference":
		err = runReference(ctx, b)
	case "fanout":
		err = runFanout(ctx, b)
	case "publish":
		err = runPublish(ctx, b)
	case "idle":
		err = runIdle(ctx, b, mon)
	case "catchup":
		err = runCatchup(ctx, b)
	case "create":
		err = runCreate(ctx, b)
	case "many":
		err = runMany(ctx, b)
	}
	mon.stop()
	b.finish(mon)
	if err != nil {
		b.res.Notes = append(b.res.Notes, "run error: "+err.Error())
	}
	if werr := b.res.write(cfg.JSON, stdout, stderr); werr != nil && err == nil {
		err = werr
	}
	if cfg.Report != "" {
		if rerr := b.writeReport(cfg.Report, mon); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return err
	}
	if b.res.Inconsistencies > 0 || b.res.Failures > 0 || b.res.ChannelFailures > 0 {
		return fmt.Errorf("%d inconsistencies, %d failed clients, %d failed channels",
			b.res.Inconsistencies, b.res.Failures, b.res.ChannelFailures)
	}
	return nil
}
