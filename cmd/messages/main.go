// Command messages is the streaming server: it serves the reference and
// channels HTTP APIs, WebSocket subscriptions, the browser viewer and
// Prometheus metrics, and persists every message to the database.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	runtimepprof "runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/messages-server/messages/internal/backoff"
	"github.com/messages-server/messages/internal/cli"
	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/viewer"
	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/streams"
)

func main() {
	cli.Run("messages", func(ctx context.Context) error {
		err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
		if errors.Is(err, errVersion) {
			fmt.Println(version())
			return nil
		}
		return err
	})
}

// config is the server's configuration, from flags with environment
// fallbacks.
type config struct {
	addr            string
	databaseURL     string
	persistInterval time.Duration
	persistWorkers  int
	maxMessageBytes byteSize
	queueLen        int
	history         historyConfig
	allowedOrigins  string
	shutdownTimeout time.Duration
	logLevel        slog.Level
	logFormat       string
	version         bool
	compression     bool
	debugAddr       string
	metricsAddr     string
	auth            authConfig
	retention       time.Duration
	longPollTimeout time.Duration
	bounds          bounds
	cluster         clusterConfig
}

// defaultDatabaseURL is the SQLite file used when DATABASE_URL is unset, so
// that the server runs with nothing else installed; production sets a
// postgres:// URL.
const defaultDatabaseURL = "sqlite:./data/messages.db"

// parseConfig reads the configuration from args, with the environment
// (getenv) as fallback; flag errors and the usage go to stderr.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("messages", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var errs []error
	c.define(fs, envVars{getenv: getenv, errs: &errs})
	if err := cli.Parse(fs, args); err != nil {
		return c, err
	}
	if c.version {
		return c, errVersion
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	errs = append(errs, c.check()...)
	return c, usage(fs, errors.Join(errs...))
}

// define declares the flags of c on fs, with their environment fallbacks.
func (c *config) define(fs *flag.FlagSet, env envVars) {
	fs.StringVar(&c.addr, "addr", env.str("LISTEN_ADDR", ""), "listen address; default "+openDefaultAddr+" in open mode (no key), "+tokenDefaultAddr+" with tokens (env LISTEN_ADDR)")
	fs.StringVar(&c.databaseURL, "database-url", env.str("DATABASE_URL", defaultDatabaseURL), "database: postgres://user:pass@host:port/db for PostgreSQL, or sqlite:path/to/file.db for a SQLite file, created if missing (env DATABASE_URL)")
	fs.DurationVar(&c.persistInterval, "persist-interval", env.dur("PERSIST_INTERVAL", 100*time.Millisecond), "longest time a message waits before it is written to the database (env PERSIST_INTERVAL)")
	fs.IntVar(&c.persistWorkers, "persist-workers", env.num("PERSIST_WORKERS", 4), "database writer goroutines (env PERSIST_WORKERS)")
	c.maxMessageBytes = env.size("MAX_MESSAGE_BYTES", 64<<10)
	fs.Var(&c.maxMessageBytes, "max-message-bytes", "`size` of the largest message accepted, e.g. 64KiB (env MAX_MESSAGE_BYTES)")
	fs.IntVar(&c.queueLen, "queue-len", env.num("SUBSCRIBER_QUEUE_LEN", 64), "live queue length per subscriber; a slower one re-syncs from history (env SUBSCRIBER_QUEUE_LEN)")
	fs.StringVar(&c.allowedOrigins, "allowed-origins", env.str("ALLOWED_ORIGINS", ""), "comma-separated origin host patterns trusted besides the server's own, to open WebSockets and send POSTs from their pages; * for any (env ALLOWED_ORIGINS)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", env.dur("SHUTDOWN_TIMEOUT", 30*time.Second), "how long a graceful shutdown may take to flush (env SHUTDOWN_TIMEOUT)")
	c.logLevel = env.level("LOG_LEVEL", slog.LevelInfo)
	fs.Var((*levelFlag)(&c.logLevel), "log-level", "debug, info, warn or error (env LOG_LEVEL)")
	c.logFormat = env.choice("LOG_FORMAT", "text", logFormats)
	fs.Var(&choiceFlag{&c.logFormat, logFormats}, "log-format", "text, or json for log shippers: one JSON object a line (env LOG_FORMAT)")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.BoolVar(&c.compression, "compression", env.boolean("WS_COMPRESSION"), "enable WebSocket permessage-deflate (env WS_COMPRESSION)")
	fs.DurationVar(&c.retention, "retention", env.dur("RETENTION", 0), "delete closed channels and their history this long after they were closed, in the background; 0 keeps them forever (env RETENTION)")
	fs.StringVar(&c.debugAddr, "debug-addr", env.str("DEBUG_ADDR", ""), "if set, serve Go's pprof profiles on this address, e.g. 127.0.0.1:6060 (env DEBUG_ADDR)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", env.str("METRICS_ADDR", ""), "if set, serve /metrics on this address, without a token (e.g. an internal interface), instead of on -addr, where it needs an admin token when tokens are required (env METRICS_ADDR)")
	addHistoryFlags(fs, &c.history, env)
	addAuthFlags(fs, &c.auth, env)
	fs.DurationVar(&c.longPollTimeout, "long-poll-timeout", env.dur("LONG_POLL_TIMEOUT", 20*time.Second), "how long a Durable Streams long-poll read waits for data before answering 204 (env LONG_POLL_TIMEOUT)")
	c.bounds.define(fs, env)
	addClusterFlags(fs, &c.cluster, env)
}

// check returns what is wrong with c, and fills in what depends on other
// settings (the listen address, the node id); nil errors are dropped by
// errors.Join.
func (c *config) check() []error {
	var errs []error
	if c.persistInterval <= 0 {
		errs = append(errs, fmt.Errorf("persist interval must be positive"))
	}
	if c.retention < 0 {
		errs = append(errs, fmt.Errorf("retention must not be negative (0 keeps closed channels forever)"))
	}
	if c.persistWorkers < 1 || c.persistWorkers > 64 {
		errs = append(errs, fmt.Errorf("persist workers must be in [1, 64]"))
	}
	if c.maxMessageBytes < 1 || c.maxMessageBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("max message bytes must be in [1, 16 MiB]"))
	}
	if c.queueLen < 1 || c.queueLen > 1<<20 {
		errs = append(errs, fmt.Errorf("queue length must be in [1, 1048576]"))
	}
	if c.longPollTimeout <= 0 {
		errs = append(errs, fmt.Errorf("long-poll timeout must be positive"))
	}
	errs = append(errs, c.history.check())
	if c.shutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout must be positive"))
	}
	errs = append(errs, c.auth.finish(&c.addr)) // errors.Join drops a nil
	errs = append(errs, c.bounds.validate()...)
	errs = append(errs, c.cluster.finish(c.databaseURL))
	return errs
}

// run runs the server until ctx is cancelled, then shuts down gracefully.
// If ready is not nil it receives the listening address once serving.
// With -h it prints the usage to stderr and returns nil; a bad flag is
// printed to stderr, with the usage, and returned as a cli.UsageError.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- string) (err error) {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	authz, guard, err := newAuth(ctx, cfg.auth, splitList(cfg.allowedOrigins), log)
	if err != nil {
		return err
	}
	defer authz.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := persist.Open(ctx, cfg.cluster.storeConfig(persist.Config{URL: cfg.databaseURL, Logger: log, Metrics: prom.New(reg)}))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer store.Close()

	cl, err := joinCluster(cfg.cluster, cfg.bounds.persistWaitTimeout, store, reg, log)
	if err != nil {
		return err
	}
	defer cl.leave(log, cfg.shutdownTimeout, &err) // after the shutdown below: the hub has flushed
	p := newParts(cfg, store, cl, authz, guard, reg, log)
	// From here on the writer's workers run, and from hub.Start on actors
	// and generators too: every return, an early error included, goes
	// through this one shutdown, which stops them and flushes what they
	// hold before the store closes.
	var httpSrv *http.Server // set once serving
	defer func() {
		if serr := shutdown(log, cfg.shutdownTimeout, p.srv, httpSrv, p.writer); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	if err := cl.start(p.hub, p.streams); err != nil {
		return err
	}
	stopAsides, err := serveAsides(cfg, p.metrics, log)
	if err != nil {
		return err
	}
	defer stopAsides()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv = &http.Server{Handler: p.srv, ReadHeaderTimeout: cfg.bounds.readHeaderTimeout, IdleTimeout: cfg.bounds.idleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("viewer", viewerURL(ln.Addr())),
		slog.Any("store", store))
	// Take over the previous process's generators while serving: with
	// many of them this takes a while, and every channel is also taken
	// over on its first request. /readyz says when it is done.
	defer startTakeOver(ctx, p.hub, log)()
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		return nil
	case <-store.Lost():
		// Another server has the database: this one can persist nothing
		// more. What it had not persisted is lost, as in a crash; clients
		// resume on the other server.
		return errors.New("another server took the database lock; stopping")
	}
}

// parts are what run builds over the store: the writer, the hub, the
// Durable Streams backend, the HTTP server and the handler of /metrics.
type parts struct {
	writer  *persist.Writer
	hub     *hub.Hub
	streams *streams.Backend
	srv     *ws.Server
	metrics http.Handler
}

// newParts builds the server over store. Nothing runs yet but the
// writer's workers.
func newParts(cfg config, store *persist.Store, cl *clusterRun, authz *auth.Authorizer, guard *auth.Guard,
	reg *prometheus.Registry, log *slog.Logger) parts {
	writer := persist.NewWriter(store, persist.WriterConfig{Workers: cfg.persistWorkers, Logger: log, Metrics: prom.New(reg)})
	reg.MustRegister(buildInfo(), bufferedLimit(cfg.bounds.maxBufferedBytes))
	metrics := ws.NewMetrics(reg)
	hubCfg := hub.Config{
		Store: store, Writer: writer, PersistInterval: cfg.persistInterval, QueueLen: cfg.queueLen,
		Retention: hub.RetentionConfig{After: cfg.retention}, HistoryCacheBytes: cfg.history.hubCacheBytes(),
		HistoryPage: cfg.history.page, Logger: log, Metrics: hub.NewMetrics(prom.New(reg)), Cluster: cl.hubCluster(),
	}
	cfg.bounds.hub(&hubCfg)
	h := hub.New(hubCfg)
	backend := streams.New(h, store, streams.Config{})
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	srvCfg := ws.ServerConfig{
		Viewer: viewer.Handler(), Metrics: metricsHandler,
		AllowedOrigins: splitList(cfg.allowedOrigins), Compression: cfg.compression, MaxMessageBytes: int(cfg.maxMessageBytes),
		Logger: log, HTTPMetrics: metrics, Auth: authz, Ready: cl.ready(store.Ping),
		Streams: backend, LongPollTimeout: cfg.longPollTimeout,
		Guard: guard,
	}
	cfg.bounds.server(&srvCfg)
	if cfg.metricsAddr != "" {
		srvCfg.Metrics = nil // served on its own address only
	}
	srv := ws.NewServer(h, srvCfg)
	return parts{writer: writer, hub: h, streams: backend, srv: srv, metrics: metricsHandler}
}

// serveAsides serves, if configured, the pprof profiles (-debug-addr) and
// /metrics (-metrics-addr) on addresses of their own, and returns what
// stops them. On an error, nothing is left serving.
func serveAsides(cfg config, metricsHandler http.Handler, log *slog.Logger) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range slices.Backward(stops) {
			f()
		}
	}
	if cfg.debugAddr != "" {
		stopDebug, err := serveDebug(cfg.debugAddr, cfg.auth.hosts(), log)
		if err != nil {
			return nil, err
		}
		stops = append(stops, stopDebug)
	}
	if cfg.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		stopMetrics, err := serveAside(cfg.metricsAddr, "metrics", "/metrics", mux, cfg.auth.hosts(), log)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, stopMetrics)
	}
	return stop, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// shutdown stops accepting requests (when httpSrv is not nil), stops the
// hub, which flushes every channel and ends every stream, and waits until
// the writer has committed every queued batch, all within timeout.
func shutdown(log *slog.Logger, timeout time.Duration, srv *ws.Server, httpSrv *http.Server, writer *persist.Writer) error {
	log.Info("shutting down: flushing channels", slog.Duration("timeout", timeout))
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Stop accepting at once; streaming responses end when the hub stops.
	httpDone := make(chan error, 1)
	if httpSrv != nil {
		go func() { httpDone <- httpSrv.Shutdown(sctx) }()
	} else {
		httpDone <- nil
	}
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-httpDone; err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := writer.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("persist: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("unclean shutdown: %w", errors.Join(errs...))
	}
	log.Info("stopped: everything persisted")
	return nil
}

// startTakeOver runs takeOver on its own goroutine and returns the
// function that stops it and waits for it.
func startTakeOver(ctx context.Context, h *hub.Hub, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		takeOver(ctx, h, log)
	}()
	return func() {
		cancel()
		<-done
	}
}

// takeOver runs hub.Start until it succeeds or ctx ends, retrying with
// backoff while the database fails.
func takeOver(ctx context.Context, h *hub.Hub, log *slog.Logger) {
	start := time.Now()
	pace := backoff.Exponential{Min: time.Second, Max: 30 * time.Second}
	for {
		err := h.Start(ctx)
		if err == nil {
			log.Info("take-over done: ready", slog.Duration("took", time.Since(start)))
			return
		}
		if ctx.Err() != nil {
			return
		}
		wait := pace.Next()
		log.Error("taking over open channels failed; retrying", slog.Duration("in", wait), slog.Any("err", err))
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

// viewerURL is the address a person opens in a browser.
func viewerURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// serveDebug serves the pprof profiles on addr until the returned function
// is called. It is kept off the public listener on purpose.
func serveDebug(addr string, hosts []string, log *slog.Logger) (func(), error) {
	// Not /debug/pprof/cmdline: it would show a -jwt-secret given as a
	// flag. So no catch-all pprof.Index either, which serves it too.
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/{$}", pprof.Index)
	for _, p := range runtimepprof.Profiles() {
		mux.Handle("/debug/pprof/"+p.Name(), pprof.Handler(p.Name()))
	}
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveAside(addr, "profiles", "/debug/pprof/", mux, hosts, log)
}

// serveAside serves h on its own address, apart from the API, and logs
// the URL of path there as where what is served. It returns the function
// that stops it. A request whose Host is neither an IP address nor one of
// hosts (the API's allow-list; any with none) or localhost gets 421: no
// token guards these addresses, so a web page must not reach them through
// a name of its own pointed at them (DNS rebinding).
func serveAside(addr, what, path string, h http.Handler, hosts []string, log *slog.Logger) (func(), error) {
	names, err := auth.NewHostList(append(slices.Clone(hosts), auth.LoopbackHosts()...))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s: %w", what, err)
	}
	refuse := names.Handler(h)
	guarded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hp, _, err := net.SplitHostPort(host); err == nil {
			host = hp
		}
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			h.ServeHTTP(w, r)
			return
		}
		refuse.ServeHTTP(w, r) // h for the names allowed, 421 for others
	})
	srv := &http.Server{Handler: guarded, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("serving "+what, slog.String("addr", "http://"+ln.Addr().String()+path))
	return func() {
		srv.Close()
		<-done
	}, nil
}
