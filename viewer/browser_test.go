package viewer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/messages-server/messages/viewer"
)

// chromiumPath finds the browser. Without one the test skips loudly, or
// fails when CI is set.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium not found in PATH: the viewer's browser tests need it (Debian: apt-get install chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg)
	return ""
}

// browser is a headless Chromium for one test; it closes at t.Cleanup and
// fails the test on any uncaught JavaScript exception.
type browser struct {
	t   *testing.T
	ctx context.Context // the first tab; the browser lives as long as it

	mu   sync.Mutex
	tabs int // guarded by mu
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 860),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	// Start the browser with a context that has no deadline (see Run).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b.watchConsole(ctx, "tab0")
	return b
}

// tab opens another tab of the same browser.
func (b *browser) tab() context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		b.t.Fatalf("open tab: %v", err)
	}
	b.mu.Lock()
	b.tabs++
	name := fmt.Sprintf("tab%d", b.tabs)
	b.mu.Unlock()
	b.watchConsole(ctx, name)
	return ctx
}

// watchConsole logs the tab's console and fails the test on exceptions.
// Its goroutine ends with the tab; the cleanup waits for it.
func (b *browser) watchConsole(ctx context.Context, name string) {
	t := b.t
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException {
				t.Errorf("%s: uncaught JavaScript exception: %s\n%v", name, m.Text, m.Stack)
				continue
			}
			t.Logf("%s console %s: %s", name, m.Type, m.Text)
		}
	}()
	t.Cleanup(func() {
		if err := chromedp.Cancel(ctx); err != nil && ctx.Err() == nil {
			t.Logf("%s: close: %v", name, err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: console reader did not stop", name)
		}
	})
}

// run runs actions on a tab with a deadline.
func run(t *testing.T, ctx context.Context, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) on a tab.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %.80q: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript predicate until it is true or d passes.
func waitJS(t *testing.T, ctx context.Context, d time.Duration, what, predicate string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()
	deadline := time.Now().Add(d)
	var err error
	for {
		_, err = chromedp.Run(tctx, chromedp.Poll[bool](predicate,
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(time.Until(deadline))))
		// A page that is still loading can replace its JavaScript context
		// under the poll; poll again in the new one.
		if err == nil || !strings.Contains(err.Error(), "Cannot find context with specified id") || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("waiting for %s (%s): %v\npage: %s", what, predicate, err, describePage(ctx))
	}
}

// describePage summarizes the viewer's state for a failure message.
func describePage(ctx context.Context) string {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(tctx, chromedp.Evaluate[string](`JSON.stringify({
		hash: location.hash,
		status: document.getElementById("status")?.innerText,
		notice: document.getElementById("notice")?.textContent,
		errors: [...document.querySelectorAll(".error")].map((e) => e.textContent).filter(Boolean),
		output: (document.getElementById("output")?.textContent || "").slice(-400),
	})`))
	if err != nil {
		return fmt.Sprintf("(cannot describe the page: %v)", err)
	}
	return s
}

// TestSubscriptionProtocol runs testdata/stream_test.js in the browser: the
// resume logic of stream.js against a scripted WebSocket (gaps, duplicates,
// drops, reset, backoff).
func TestSubscriptionProtocol(t *testing.T) {
	b := newBrowser(t)
	mux := http.NewServeMux()
	mux.Handle("/", viewer.Handler())
	mux.Handle("/testdata/", http.StripPrefix("/testdata/", http.FileServer(http.Dir("testdata"))))
	mux.HandleFunc("/blank", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>test</title>")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	run(t, b.ctx, 30*time.Second, chromedp.Navigate(srv.URL+"/blank"))
	fails := eval[[]string](t, b.ctx, `import("/testdata/stream_test.js").then((m) => m.run())`)
	if len(fails) != 0 {
		t.Errorf("stream.js:\n%s", strings.Join(fails, "\n"))
	}
}
