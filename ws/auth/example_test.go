package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/ws/auth"
)

// Example shows how a server plugs the package in: each handler asks the
// Authorizer for the right it needs, and the Guard wraps the whole mux.
func Example() {
	secret := []byte("an example secret of at least 32 bytes")
	a, err := auth.New(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /channels/{id}/messages", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Authorize(r, auth.Publish, r.PathValue("id")); err != nil {
			auth.WriteError(w, err)
			return
		}
		fmt.Fprintln(w, `{"seq":1}`)
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		if err := a.AuthorizeWithQueryToken(r, auth.Subscribe, r.URL.Query().Get("id")); err != nil {
			auth.WriteError(w, err)
			return
		}
		fmt.Fprintln(w, "upgrade here")
	})
	guard, err := auth.NewGuard(auth.GuardConfig{AllowedHosts: auth.LoopbackHosts()})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(guard.Handler(mux))
	defer srv.Close()

	tok, err := auth.SignHS256(secret, &auth.Claims{
		Publish:          []string{"news-*"},
		Subscribe:        []string{"*"},
		RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
	})
	if err != nil {
		panic(err)
	}
	do := func(method, path, token, host string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("hello"))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		line := fmt.Sprint(method, " ", auth.RedactURLString(path), " ", resp.Status)
		if c := resp.Header.Get("WWW-Authenticate"); c != "" {
			line += " " + c
		}
		fmt.Println(line)
	}
	do("POST", "/channels/news-1/messages", tok, "")
	do("POST", "/channels/news-1/messages", "", "")
	do("POST", "/channels/sport-1/messages", tok, "")
	do("GET", "/ws?id=news-1&token="+tok, "", "")
	do("GET", "/ws?id=news-1", tok, "rebind.evil.example")
	// Output:
	// POST /channels/news-1/messages 200 OK
	// POST /channels/news-1/messages 401 Unauthorized Bearer realm="messages"
	// POST /channels/sport-1/messages 403 Forbidden Bearer realm="messages", error="insufficient_scope", error_description="the token of 'alice' has no publish right on channel 'sport-1'"
	// GET /ws?id=news-1&token=REDACTED 200 OK
	// GET /ws?id=news-1 421 Misdirected Request
}
