package viewer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/messages-server/messages/viewer"
	"github.com/messages-server/messages/ws/wstest"
)

// These tests drive the real viewer in headless Chromium against a complete
// server (hub, persist writer, PostgreSQL).

const (
	jsText    = `document.getElementById("output").textContent`
	jsState   = `document.getElementById("status").dataset.state`
	jsShown   = `Number(document.getElementById("output").dataset.lastSeq || 0)`
	jsConnect = `Number(document.getElementById("status").dataset.connects || 0)`
	// jsBeforeLive is the text rendered before the catch-up/live marker.
	jsBeforeLive = `(() => {
		const out = document.getElementById("output");
		const m = out.querySelector(".marker.live");
		if (!m) return null;
		const r = document.createRange();
		r.setStart(out, 0);
		r.setEndBefore(m);
		return r.toString();
	})()`
)

func startServer(t *testing.T) *wstest.Server {
	t.Helper()
	return wstest.Start(t, wstest.Options{Viewer: viewer.Handler(), PersistInterval: 50 * time.Millisecond})
}

// generated is the content of a generator channel: "i: id\n" for i=1..n.
func generated(id string, from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "%d: %s\n", i, id)
	}
	return b.String()
}

// httpDo makes a request to the server and returns the body, failing the
// test on a status other than want.
func httpDo(t *testing.T, method, url, contentType, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	if res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, res.StatusCode, want, b)
	}
	return string(b)
}

// screenshot saves the tab's viewport as a PNG artifact and logs its path.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func setColorScheme(t *testing.T, ctx context.Context, scheme string) {
	t.Helper()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		t.Fatalf("emulate %s color scheme: %v", scheme, err)
	}
}

// TestViewerStream starts a stream from the form, opens a second view by
// deep link mid-stream, and checks that both show exactly the channel's
// content, with the catch-up/live marker where history ended.
func TestViewerStream(t *testing.T) {
	b := newBrowser(t)
	srv := startServer(t)
	const id, lines = "e2e.stream-1", 150
	want := generated(id, 1, lines)

	tab1 := b.ctx
	run(t, tab1, 30*time.Second,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#start-form")),
		chromedp.SetValue(chromedp.CSS(`#start-form input[name=freq]`), "30"),
		chromedp.SetValue(chromedp.CSS(`#start-form input[name=max]`), fmt.Sprint(lines)),
		chromedp.SetValue(chromedp.CSS(`#start-form input[name=id]`), id),
		chromedp.Click(chromedp.CSS(`#start-form button[type=submit]`)),
	)
	waitJS(t, tab1, 10*time.Second, "the watch view", `location.hash === "#/watch/`+id+`"`)
	waitJS(t, tab1, 10*time.Second, "30 lines in the first view", jsShown+` >= 30`)

	// A second view, opened by deep link while the stream runs.
	tab2 := b.tab()
	run(t, tab2, 30*time.Second, chromedp.Navigate(srv.URL+"/#/watch/"+id))
	waitJS(t, tab2, 10*time.Second, "the live marker in the second view", jsBeforeLive+` !== null`)
	liveAt := eval[int](t, tab2, `Number(document.querySelector("#output .marker.live").dataset.seq)`)
	if liveAt < 30 || liveAt >= lines {
		t.Errorf("second view: live marker at seq %d, want mid-stream (30..%d)", liveAt, lines-1)
	}
	if got, wantBefore := eval[string](t, tab2, jsBeforeLive), generated(id, 1, liveAt); got != wantBefore {
		t.Errorf("second view: text before the live marker:\n%q\nwant lines 1..%d:\n%q", got, liveAt, wantBefore)
	}
	if st := eval[string](t, tab2, jsState); st != "live" {
		t.Errorf("second view: state %q mid-stream, want live", st)
	}
	screenshot(t, tab2, "watch-live-light.png")
	t.Logf("second view's status mid-stream: %s", eval[string](t, tab2, `document.getElementById("status").innerText.replace(/\s+/g, " ")`))

	// Scrolled up, the view stays put and offers to follow again.
	atBottom := `(() => { const o = document.getElementById("output"); return o.scrollHeight - o.scrollTop - o.clientHeight < 2; })()`
	if !eval[bool](t, tab1, atBottom) {
		t.Error("the view does not follow the stream")
	}
	shown := eval[int](t, tab1, `(document.getElementById("output").scrollTop = 0, `+jsShown+`)`)
	waitJS(t, tab1, 10*time.Second, "more lines", fmt.Sprintf(`%s >= %d`, jsShown, shown+5))
	if top := eval[float64](t, tab1, `document.getElementById("output").scrollTop`); top != 0 {
		t.Errorf("the view scrolled to %v although the person scrolled up", top)
	}
	run(t, tab1, 10*time.Second, chromedp.Click(chromedp.CSS("#jump")))
	waitJS(t, tab1, 5*time.Second, "following again", atBottom)

	for i, tab := range []context.Context{tab1, tab2} {
		waitJS(t, tab, 20*time.Second, "the end", jsState+` === "ended"`)
		if got := eval[string](t, tab, jsText); got != want {
			t.Errorf("view %d: rendered text differs from the channel's content:\n got %q\nwant %q", i+1, got, want)
		}
		if n := eval[int](t, tab, `document.querySelectorAll("#output .marker.live").length`); n != 1 {
			t.Errorf("view %d: %d live markers, want 1", i+1, n)
		}
		if st := eval[string](t, tab, `document.getElementById("st-state").textContent`); st != "ended" {
			t.Errorf("view %d: status says %q, want ended", i+1, st)
		}
	}
	// The reference API agrees.
	if ref := httpDo(t, "GET", srv.URL+"/?id="+id, "", "", 200); ref != want {
		t.Errorf("GET /?id= gives %q, want %q", ref, want)
	}

	// A reload of the deep link shows the same view and content again.
	run(t, tab2, 30*time.Second, chromedp.Reload())
	waitJS(t, tab2, 10*time.Second, "the end after reload", jsState+` === "ended"`)
	if got := eval[string](t, tab2, jsText); got != want {
		t.Errorf("after reload: rendered text differs:\n got %q\nwant %q", got, want)
	}
	if h := eval[string](t, tab2, `document.getElementById("watch-title").textContent`); h != id {
		t.Errorf("after reload: title %q, want %q", h, id)
	}

	// Dark theme at phone width.
	setColorScheme(t, tab2, "dark")
	run(t, tab2, 10*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	overflow := eval[bool](t, tab2, `document.documentElement.scrollWidth > document.documentElement.clientWidth`)
	if overflow {
		t.Error("the watch view scrolls sideways at phone width")
	}
	bg := eval[string](t, tab2, `getComputedStyle(document.body).backgroundColor`)
	if bg == "rgb(244, 246, 249)" {
		t.Errorf("dark scheme: body background %s is the light one", bg)
	}
	screenshot(t, tab2, "watch-ended-dark-phone.png")
}

// TestViewerReconnect drops every WebSocket of the server several times
// while a producer publishes, and checks that the view reconnects by itself
// and shows every message exactly once.
func TestViewerReconnect(t *testing.T) {
	b := newBrowser(t)
	srv := startServer(t)
	const id = "e2e-reconnect"
	httpDo(t, "POST", srv.URL+"/channels", "application/json", `{"id":"`+id+`"}`, 201)
	var want strings.Builder
	seq := 0
	publish := func(n int) {
		for range n {
			seq++
			msg := fmt.Sprintf("message %d of %s\n", seq, id)
			want.WriteString(msg)
			body := httpDo(t, "POST", srv.URL+"/channels/"+id+"/messages", "text/plain", msg, 200)
			var r struct{ Seq int }
			if err := json.Unmarshal([]byte(body), &r); err != nil || r.Seq != seq {
				t.Fatalf("publish: %s (%v), want seq %d", body, err, seq)
			}
		}
	}
	publish(20)
	run(t, b.ctx, 30*time.Second, chromedp.Navigate(srv.URL+"/#/watch/"+id))
	waitJS(t, b.ctx, 10*time.Second, "live at 20", jsState+` === "live" && `+jsShown+` === 20`)

	for round := 1; round <= 3; round++ {
		before := eval[int](t, b.ctx, jsConnect)
		srv.DropConnections()
		publish(15) // while the viewer is disconnected or reconnecting
		waitJS(t, b.ctx, 15*time.Second, fmt.Sprintf("round %d: reconnected and caught up", round),
			fmt.Sprintf(`%s > %d && %s === "live" && %s === %d`, jsConnect, before, jsState, jsShown, seq))
		publish(5) // live after the reconnect
		waitJS(t, b.ctx, 10*time.Second, fmt.Sprintf("round %d: live messages", round), fmt.Sprintf(`%s === %d`, jsShown, seq))
		if got := eval[string](t, b.ctx, jsText); got != want.String() {
			t.Fatalf("round %d: rendered text differs (duplicate or missing message):\n got %q\nwant %q", round, got, want.String())
		}
	}
	if n := eval[int](t, b.ctx, `document.querySelectorAll("#output .marker.resume").length`); n != 3 {
		t.Errorf("%d reconnect markers, want 3", n)
	}
	screenshot(t, b.ctx, "watch-reconnected-light.png")
	httpDo(t, "POST", srv.URL+"/channels/"+id+"/close", "", "", 200)
	waitJS(t, b.ctx, 10*time.Second, "the end", jsState+` === "ended"`)
	if got := eval[string](t, b.ctx, jsText); got != want.String() {
		t.Errorf("after the end: rendered text differs:\n got %q\nwant %q", got, want.String())
	}
}

// TestViewerPublish creates a channel from the form, publishes from the box
// (text that looks like HTML must stay text), shows errors, closes the
// channel, and finds it in the filtered channel list.
func TestViewerPublish(t *testing.T) {
	b := newBrowser(t)
	srv := startServer(t)
	const id = "e2e-publish"
	ctx := b.ctx
	run(t, ctx, 30*time.Second,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#create-form")),
		chromedp.SetValue(chromedp.CSS(`#create-form input[name=id]`), id),
		chromedp.Click(chromedp.CSS(`#create-form button[type=submit]`)),
	)
	waitJS(t, ctx, 10*time.Second, "live on the new channel", `location.hash === "#/watch/`+id+`" && `+jsState+` === "live"`)

	const first = `hello <b>world</b> & "ünïcode" 🎉`
	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#publish-text"), first),
		chromedp.Click(chromedp.CSS("#publish-send")),
	)
	waitJS(t, ctx, 10*time.Second, "the published message", jsShown+` === 1`)
	waitJS(t, ctx, 10*time.Second, "the first append's answer",
		`document.getElementById("publish-result").textContent === "Sent as seq 1."`)
	// The second one is sent with the keyboard: Ctrl+Enter in the box.
	run(t, ctx, 10*time.Second,
		chromedp.Focus(chromedp.CSS("#publish-text")),
		chromedp.SendKeys(chromedp.CSS("#publish-text"), "second"),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
	)
	waitJS(t, ctx, 10*time.Second, "the second message", jsShown+` === 2`)
	if got, want := eval[string](t, ctx, jsText), first+"\nsecond\n"; got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#output b").length`); n != 0 {
		t.Errorf("message data was rendered as HTML (%d <b> elements)", n)
	}
	// The message reaches the WebSocket before the append's answer may reach
	// the page, and the answer clears the box: wait for it before typing more.
	waitJS(t, ctx, 10*time.Second, "the second append's answer",
		`document.getElementById("publish-result").textContent === "Sent as seq 2."`)

	// An error from the server is shown next to the box.
	big := strings.Repeat("x", 70<<10)
	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#publish-text"), big),
		chromedp.Click(chromedp.CSS("#publish-send")),
	)
	waitJS(t, ctx, 10*time.Second, "the too-big error", `document.getElementById("publish-error").textContent.startsWith("Not sent: ")`)
	t.Logf("error shown: %s", eval[string](t, ctx, `document.getElementById("publish-error").textContent`))

	// Close, confirmed by a second click.
	run(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("#close-btn")))
	if st := eval[string](t, ctx, jsState); st != "live" {
		t.Fatalf("one click closed the channel (state %q)", st)
	}
	run(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("#close-btn")))
	waitJS(t, ctx, 10*time.Second, "the end", jsState+` === "ended"`)
	if vis := eval[bool](t, ctx, `!document.getElementById("publish-form").hidden`); vis {
		t.Error("the publish box is still shown on a closed channel")
	}

	// Creating it again is refused, and the form says why.
	run(t, ctx, 30*time.Second,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#create-form")),
		chromedp.SetValue(chromedp.CSS(`#create-form input[name=id]`), id),
		chromedp.Click(chromedp.CSS(`#create-form button[type=submit]`)),
	)
	waitJS(t, ctx, 10*time.Second, "the conflict error", `document.querySelector("#create-form .error").textContent !== ""`)
	t.Logf("error shown: %s", eval[string](t, ctx, `document.querySelector("#create-form .error").textContent`))

	// The channel list shows it, closed, with its last seq; the filter works.
	httpDo(t, "POST", srv.URL+"/channels", "application/json", `{"id":"other-channel"}`, 201)
	rowSel := `[...document.querySelectorAll("#channel-table tbody tr")]`
	visible := rowSel + `.filter((r) => !r.hidden).map((r) => r.cells[0].textContent)`
	waitJS(t, ctx, 10*time.Second, "two channels listed", rowSel+`.length === 2`)
	row := eval[[]string](t, ctx, rowSel+`.find((r) => r.cells[0].textContent === "`+id+`").innerText.split("\t").map((s) => s.trim())`)
	if len(row) < 4 || row[1] != "closed" || row[2] != "2" {
		t.Errorf("list row %q, want state closed and last seq 2", row)
	}
	run(t, ctx, 10*time.Second, chromedp.SendKeys(chromedp.CSS("#filter"), "publ"))
	if got := eval[[]string](t, ctx, visible); len(got) != 1 || got[0] != id {
		t.Errorf("filter %q shows %q", "publ", got)
	}
	if h := eval[string](t, ctx, `location.hash`); h != "#/?filter=publ" {
		t.Errorf("filter not kept in the link: %q", h)
	}
	screenshot(t, ctx, "list-filtered-light.png")
	run(t, ctx, 10*time.Second, chromedp.SendKeys(chromedp.CSS("#filter"), "zzz"))
	if got := eval[[]string](t, ctx, visible); len(got) != 0 {
		t.Errorf("filter %q shows %q", "publzzz", got)
	}
	if txt := eval[string](t, ctx, `document.getElementById("list-empty").textContent`); !strings.Contains(txt, "matches") {
		t.Errorf("no 'no match' message, got %q", txt)
	}

	// A link to a channel that does not exist says so, and does not retry.
	run(t, ctx, 30*time.Second, chromedp.Navigate(srv.URL+"/#/watch/no-such-channel"))
	waitJS(t, ctx, 10*time.Second, "the failure", jsState+` === "failed"`)
	if txt := eval[string](t, ctx, `document.getElementById("notice").textContent`); !strings.Contains(txt, "no-such-channel") {
		t.Errorf("not-found notice %q does not name the channel", txt)
	}
	if vis := eval[bool](t, ctx, `!document.getElementById("publish-form").hidden`); vis {
		t.Error("the publish box is shown for a channel that does not exist")
	}
	screenshot(t, ctx, "watch-not-found-light.png")

	// Delete, confirmed by a second click, while watching: the stream ends
	// with "deleted", without retrying, and the channel is gone.
	run(t, ctx, 30*time.Second, chromedp.Navigate(srv.URL+"/#/watch/other-channel"))
	waitJS(t, ctx, 10*time.Second, "live on the channel to delete", jsState+` === "live"`)
	run(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("#delete-btn")))
	httpDo(t, "GET", srv.URL+"/channels/other-channel", "", "", 200) // one click deletes nothing
	run(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("#delete-btn")))
	waitJS(t, ctx, 10*time.Second, "the stream ended by the delete", jsState+` === "failed" && `+
		`document.getElementById("notice").textContent.includes("deleted")`)
	httpDo(t, "GET", srv.URL+"/channels/other-channel", "", "", 404)
	if n := eval[int](t, ctx, `Number(document.getElementById("status").dataset.connects)`); n != 1 {
		t.Errorf("%d connections: the viewer retried a deleted channel", n)
	}
}
