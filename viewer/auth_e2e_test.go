package viewer_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/viewer"
	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/wstest"
)

const testSecret = "a test secret that is at least 32 bytes long"

// signToken mints a token signed with testSecret, valid for ttl.
func signToken(t *testing.T, c auth.Claims, ttl time.Duration) string {
	t.Helper()
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
	tok, err := auth.SignHS256([]byte(testSecret), &c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authDo is httpDo with a bearer token.
func authDo(t *testing.T, method, url, token, body string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d", method, url, res.StatusCode, want)
	}
}

// startWithToken starts a server with the viewer that requires tokens
// signed with testSecret, creates channel id holding "one\n", and returns
// the server and an admin token.
func startWithToken(t *testing.T, id string) (*wstest.Server, string) {
	t.Helper()
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	srv := wstest.Start(t, wstest.Options{Viewer: viewer.Handler(), PersistInterval: 50 * time.Millisecond, Auth: a})
	admin := signToken(t, auth.Claims{Admin: true}, time.Hour)
	authDo(t, "POST", srv.URL+"/channels", admin, `{"id":"`+id+`"}`, 201)
	authDo(t, "POST", srv.URL+"/channels/"+id+"/messages", admin, "one\n", 200)
	return srv, admin
}

// promptShown is true in the viewer while it shows the token prompt.
const promptShown = `!document.getElementById("token-form").hidden`

// watchUntilPrompt opens channel id in the viewer at base, which must ask
// for a token.
func watchUntilPrompt(t *testing.T, ctx context.Context, base, id string) {
	t.Helper()
	run(t, ctx, 30*time.Second, chromedp.Navigate(base+"/#/watch/"+id))
	waitJS(t, ctx, 10*time.Second, "the token prompt", promptShown)
}

// TestViewerToken opens a channel on a server that requires tokens: the
// viewer gets 401, asks for a token, refuses a bad one with the server's
// reason, and with a good one shows the channel live over the WebSocket
// (?token=), publishes with an Authorization header, links the text stream
// with ?token=, and keeps the token for this tab only.
func TestViewerToken(t *testing.T) {
	b := newBrowser(t)
	const id = "e2e-auth"
	srv, admin := startWithToken(t, id)

	ctx := b.ctx
	watchUntilPrompt(t, ctx, srv.URL, id)
	if n := eval[int](t, ctx, jsShown); n != 0 {
		t.Fatalf("%d messages shown without a token", n)
	}
	screenshot(t, ctx, "token-prompt-light.png")

	// An expired token: the prompt stays and says why.
	expired := signToken(t, auth.Claims{Admin: true}, -time.Hour)
	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#token-input"), expired),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
	)
	waitJS(t, ctx, 10*time.Second, "the prompt again, saying the token expired",
		promptShown+` && document.getElementById("token-reason").textContent.includes("expired")`)

	user := signToken(t, auth.Claims{Subscribe: []string{"e2e-*"}, Publish: []string{"e2e-*"}}, time.Hour)
	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#token-input"), user),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
	)
	waitJS(t, ctx, 10*time.Second, "live with the token", jsState+` === "live" && `+jsShown+` === 1`)
	if eval[bool](t, ctx, promptShown) {
		t.Error("the prompt is still shown with a good token")
	}
	if got := eval[string](t, ctx, `sessionStorage.getItem("messages.token")`); got != user {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	if eval[string](t, ctx, `localStorage.length + document.cookie`) != "0" {
		t.Error("the token was kept beyond the tab (localStorage or a cookie)")
	}

	// Publishing sends the token in the Authorization header.
	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#publish-text"), "two"),
		chromedp.Click(chromedp.CSS("#publish-send")),
	)
	waitJS(t, ctx, 10*time.Second, "the published message", jsShown+` === 2`)
	if got := eval[string](t, ctx, jsText); got != "one\ntwo\n" {
		t.Errorf("rendered %q, want one, two", got)
	}
	// The text stream link carries the token in the query.
	authDo(t, "POST", srv.URL+"/channels/"+id+"/close", admin, "", 200)
	waitJS(t, ctx, 10*time.Second, "the end", jsState+` === "ended"`)
	href := eval[string](t, ctx, `document.getElementById("text-link").href`)
	if !strings.Contains(href, "token="+user) {
		t.Errorf("text link %q lacks the token", href)
	}
	if got := eval[string](t, ctx, `fetch(document.getElementById("text-link").href).then((r) => r.text())`); got != "one\ntwo\n" {
		t.Errorf("the text link gives %q", got)
	}

	// Deleting needs admin: the server's refusal is shown.
	run(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("#delete-btn")), chromedp.Click(chromedp.CSS("#delete-btn")))
	waitJS(t, ctx, 10*time.Second, "the delete's 403",
		`document.getElementById("notice").textContent.startsWith("Cannot delete:") && document.getElementById("notice").textContent.includes("admin")`)
	authDo(t, "GET", srv.URL+"/channels/"+id, admin, "", 200)

	// The channel list needs admin: the token is valid, so no prompt, the
	// server's reason instead.
	run(t, ctx, 30*time.Second, chromedp.Navigate(srv.URL+"/#/"))
	waitJS(t, ctx, 10*time.Second, "the list's 403", `document.getElementById("list-error").textContent.includes("admin")`)
	if eval[bool](t, ctx, promptShown) {
		t.Error("a 403 brought up the token prompt")
	}

	// Another tab does not have it.
	tab2 := b.tab()
	run(t, tab2, 30*time.Second, chromedp.Navigate(srv.URL+"/#/watch/"+id))
	waitJS(t, tab2, 10*time.Second, "the prompt in another tab", promptShown)

	// Forgetting it brings the prompt back.
	run(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("#forget-token")))
	waitJS(t, ctx, 10*time.Second, "the prompt after forgetting", promptShown+` && sessionStorage.getItem("messages.token") === null`)
}

// TestViewerTokenExpires: when the token a channel is watched with
// expires, the server ends the WebSocket (4401); the viewer asks for a new
// token, saying the old one expired, and with it goes on where it stopped.
func TestViewerTokenExpires(t *testing.T) {
	b := newBrowser(t)
	const id = "e2e-expiry"
	srv, admin := startWithToken(t, id)

	ctx := b.ctx
	watchUntilPrompt(t, ctx, srv.URL, id)
	// Accepted for three more seconds: its exp is past, within the clock
	// skew the server tolerates.
	short := signToken(t, auth.Claims{Subscribe: []string{id}}, -auth.Leeway+3*time.Second)
	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#token-input"), short),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
	)
	waitJS(t, ctx, 10*time.Second, "live with the short token", jsState+` === "live" && `+jsShown+` === 1`)
	waitJS(t, ctx, 20*time.Second, "the prompt once the token expired",
		promptShown+` && document.getElementById("token-reason").textContent.includes("expired")`)

	authDo(t, "POST", srv.URL+"/channels/"+id+"/messages", admin, "two\n", 200)
	fresh := signToken(t, auth.Claims{Subscribe: []string{id}}, time.Hour)
	run(t, ctx, 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#token-input"), fresh),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
	)
	waitJS(t, ctx, 20*time.Second, "live again, with what was sent meanwhile", jsState+` === "live" && `+jsShown+` === 2`)
	if got := eval[string](t, ctx, jsText); got != "one\ntwo\n" {
		t.Errorf("rendered %q after the new token, want one, two", got)
	}
}
