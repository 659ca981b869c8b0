package viewer_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestViewerTokenHomeOnlyPrompt: on a server that requires tokens, the
// home view without one shows the token prompt alone, not an empty
// channel list ("0 channels") or the forms under it.
func TestViewerTokenHomeOnlyPrompt(t *testing.T) {
	b := newBrowser(t)
	srv, _ := startWithToken(t, "e2e-home")
	run(t, b.ctx, 30*time.Second, chromedp.Navigate(srv.URL+"/"))
	waitJS(t, b.ctx, 10*time.Second, "the token prompt", `!document.getElementById("token-form").hidden`)
	if !eval[bool](t, b.ctx, `document.getElementById("home-view").hidden`) {
		t.Errorf("the home view is shown under the token prompt: %q",
			eval[string](t, b.ctx, `document.getElementById("list-info").textContent`))
	}
	screenshot(t, b.ctx, "token-home.png")
}
