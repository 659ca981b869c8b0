package viewer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// jsPlot reads a plot's number of points and the top of its scale.
const jsPlot = `((k) => { const s = document.querySelector('svg[data-plot="' + k + '"]');
	return s ? Number(s.dataset.points) + "/" + Number(s.dataset.max || 0) : "missing"; })`

// TestViewerServerPanel: the home view's server panel plots live data from
// /stats: appends and deliveries per second above zero while a generator
// runs and a view watches it, and every plot drawn.
func TestViewerServerPanel(t *testing.T) {
	b := newBrowser(t)
	srv := startServer(t)
	httpDo(t, "POST", srv.URL+"/channels", "application/json", `{"id":"panel-gen","generator":{"freq":100,"max":100000}}`, 201)
	watcher := b.tab()
	run(t, watcher, 30*time.Second, chromedp.Navigate(srv.URL+"/#/watch/panel-gen"))
	waitJS(t, watcher, 10*time.Second, "the watcher live", jsState+` === "live"`)

	home := b.ctx
	run(t, home, 30*time.Second, chromedp.Navigate(srv.URL+"/"))
	waitJS(t, home, 10*time.Second, "the server panel", `!document.getElementById("server-panel").hidden`)
	for _, k := range []string{"appends", "deliveries"} {
		waitJS(t, home, 15*time.Second, k+" plotted above zero", fmt.Sprintf(
			`(() => { const s = document.querySelector('svg[data-plot="%s"]'); return Number(s.dataset.points) >= 3 && Number(s.dataset.max) > 1; })()`, k))
	}
	for _, k := range []string{"subscribers", "channels", "persist-lag", "buffered", "catchup-p99"} {
		got := eval[string](t, home, jsPlot+`("`+k+`")`)
		if got == "missing" || strings.HasPrefix(got, "0/") {
			t.Errorf("plot %s: %s, want points", k, got)
		}
	}
	if n := eval[int](t, home, `document.querySelector('svg[data-plot="appends"] polyline').getAttribute("points").split(" ").length`); n < 3 {
		t.Errorf("the appends line has %d points", n)
	}
	if v := eval[string](t, home, `document.querySelector('[data-value="subscribers"]').textContent`); v != "1" {
		t.Errorf("subscribers shown: %q, want 1", v)
	}
	screenshot(t, home, "home-panel.png")

	// At phone width the list fits: no column cut off, long ids wrap in a
	// column wide enough to read.
	httpDo(t, "POST", srv.URL+"/channels", "application/json", `{"id":"a-rather-long-channel-id.with-parts:and-more-parts-0123456789"}`, 201)
	run(t, home, 10*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	waitJS(t, home, 10*time.Second, "the long id listed", `document.querySelectorAll("#channel-table tbody tr").length >= 2`)
	if eval[bool](t, home, `(() => { const w = document.querySelector(".table-wrap"); return w.scrollWidth > w.clientWidth; })()`) {
		t.Error("the channel list is wider than the phone screen: a column is cut off")
	}
	if w := eval[float64](t, home, `document.querySelector("#channel-table td.id").getBoundingClientRect().width`); w < 120 {
		t.Errorf("the id column is %.0f px wide at phone width: ids wrap a few characters per line", w)
	}
	if eval[bool](t, home, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
		t.Error("the home view scrolls sideways at phone width")
	}
	screenshot(t, home, "home-phone.png")
}

// TestViewerWatchPlots: the watch view draws messages per second and live
// latency while a stream runs; its history timeline shows the channel's
// messages over time, and a click on it opens the stream from the seq
// appended at the time clicked, with "show earlier" reading what comes
// before.
func TestViewerWatchPlots(t *testing.T) {
	b := newBrowser(t)
	srv := startServer(t)
	const id, lines = "timeline-1", 300
	httpDo(t, "POST", srv.URL+"/channels", "application/json", fmt.Sprintf(`{"id":%q,"generator":{"freq":150,"max":%d}}`, id, lines), 201)
	tab := b.ctx
	run(t, tab, 30*time.Second, chromedp.Navigate(srv.URL+"/#/watch/"+id))
	waitJS(t, tab, 15*time.Second, "the rate plot drawn", `(() => { const s = document.querySelector('svg[data-plot="rate"]'); return Number(s.dataset.points) >= 1 && Number(s.dataset.max) > 1; })()`)
	waitJS(t, tab, 15*time.Second, "the latency plot drawn", `Number(document.querySelector('svg[data-plot="latency"]').dataset.points) >= 1`)
	waitJS(t, tab, 20*time.Second, "the end", jsState+` === "ended"`)

	// Reload for a timeline of the whole history.
	run(t, tab, 30*time.Second, chromedp.Reload())
	waitJS(t, tab, 15*time.Second, "the timeline", fmt.Sprintf(
		`(() => { const s = document.querySelector('svg[data-plot="timeline"]'); return Number(s.dataset.points) === 60 && s.dataset.last === "%d"; })()`, lines))
	if n := eval[int](t, tab, `[...document.querySelectorAll('svg[data-plot="timeline"] rect')].filter((r) => Number(r.getAttribute("height")) > 0).length`); n < 30 {
		t.Errorf("the timeline has %d bars above zero, want most of 60", n)
	}
	screenshot(t, tab, "watch-timeline.png")

	// A click at the middle of the timeline.
	eval[bool](t, tab, `(() => {
		const s = document.querySelector('svg[data-plot="timeline"]'); const r = s.getBoundingClientRect();
		s.dispatchEvent(new MouseEvent("click", { clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true }));
		return true; })()`)
	waitJS(t, tab, 10*time.Second, "the stream opened from a point", `location.hash.includes("?from=")`)
	from := eval[int](t, tab, `Number(new URLSearchParams(location.hash.split("?")[1]).get("from"))`)
	if from < lines/4 || from > 3*lines/4 {
		t.Errorf("a click at the middle of the timeline opens from seq %d, want near %d", from, lines/2)
	}
	waitJS(t, tab, 15*time.Second, "the end from there", jsState+` === "ended"`)
	if got, want := eval[string](t, tab, jsText), generated(id, from+1, lines); got != want {
		t.Errorf("from %d: the view shows\n%q\nwant\n%q", from, got, want)
	}
	if first := eval[string](t, tab, `document.getElementById("output").dataset.firstSeq`); first != fmt.Sprint(from+1) {
		t.Errorf("first seq shown %s, want %d", first, from+1)
	}
	run(t, tab, 10*time.Second, chromedp.Click(chromedp.CSS("#show-earlier")))
	waitJS(t, tab, 10*time.Second, "the earlier messages", `document.getElementById("output").dataset.firstSeq === "1"`)
	if got, want := eval[string](t, tab, jsText), generated(id, 1, lines); got != want {
		t.Errorf("after show earlier: the view shows\n%q\nwant\n%q", got, want)
	}
	if !eval[bool](t, tab, `document.getElementById("show-earlier").hidden`) {
		t.Error(`"show earlier" still offered at seq 1`)
	}
}
