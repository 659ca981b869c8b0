package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/wstest"
)

// TestBenchWithToken runs the bench against a server that requires tokens:
// with -token (or MESSAGES_TOKEN) every HTTP call and WebSocket carries it
// and the run is consistent; without one it fails saying why, and the
// token never shows in its output.
func TestBenchWithToken(t *testing.T) {
	secret := []byte("a test secret that is at least 32 bytes long")
	a, err := auth.New(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite", Auth: a})
	c := auth.Claims{Admin: true, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
	tok, err := auth.SignHS256(secret, &c)
	if err != nil {
		t.Fatal(err)
	}

	r := runBench(t, srv.URL, "-token", tok, "-scenario", "reference", "-channels", "4", "-clients", "3", "-freq", "500",
		"-max", "20", "-transport", "mixed", "-resume-fraction", "0.5")
	if r.Completed != 12 || r.Delivered != 12*20 {
		t.Errorf("reference with -token: completed %d, delivered %d; want 12, 240", r.Completed, r.Delivered)
	}
	env := func(k string) string {
		if k == "MESSAGES_TOKEN" {
			return tok
		}
		return ""
	}
	r = runBenchEnv(t, env, srv.URL, "-prefix", "pub-", "-scenario", "publish", "-channels", "2", "-clients", "2", "-rate", "200", "-duration", "500ms", "-conns", "2")
	if r.Appended != 100 || r.Completed != 4 || r.Delivered != 200 {
		t.Errorf("publish with MESSAGES_TOKEN: appended %d, completed %d, delivered %d; want 100, 4, 200", r.Appended, r.Completed, r.Delivered)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	err = run(ctx, []string{"-url", srv.URL, "-json", "-progress", "0", "-prefix", "none-", "-scenario", "reference", "-channels", "1", "-clients", "1", "-max", "5"},
		func(string) string { return "" }, &out, &out)
	if err == nil || !strings.Contains(out.String()+err.Error(), "401") {
		t.Errorf("without a token: %v, want a failure naming 401\n%s", err, out.String())
	}
	out.Reset()
	_ = run(ctx, []string{"-url", srv.URL, "-token", tok, "-json", "-progress", "0", "-prefix", "last-", "-scenario", "reference", "-channels", "1", "-clients", "1", "-max", "5"},
		func(string) string { return "" }, &out, io.Discard)
	if strings.Contains(out.String(), tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Errorf("the token appears in the result:\n%s", out.String())
	}
}

// TestBenchCountsFailedChannels runs each scenario that creates channels
// against a server that requires tokens, without one: the channels that
// could not be created are counted as failed channels, apart from their
// clients, so that the clients add up (started = failed here).
func TestBenchCountsFailedChannels(t *testing.T) {
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte("a test secret that is at least 32 bytes long")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite", Auth: a})
	for _, scenario := range []string{"reference", "fanout", "publish"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr strings.Builder
		err := run(ctx, []string{"-url", srv.URL, "-json", "-progress", "0", "-prefix", scenario + "-", "-scenario", scenario,
			"-channels", "2", "-clients", "5", "-max", "5", "-duration", "500ms", "-rate", "10"},
			func(string) string { return "" }, &stdout, &stderr)
		cancel()
		var r result
		if jerr := json.Unmarshal([]byte(stdout.String()), &r); jerr != nil {
			t.Fatalf("%s: decode result: %v\n%s%s", scenario, jerr, stdout.String(), stderr.String())
		}
		if err == nil || !strings.Contains(err.Error(), "2 failed channels") {
			t.Errorf("%s: run = %v, want an error naming 2 failed channels", scenario, err)
		}
		if r.Clients != 10 || r.Failures != 10 || r.Completed != 0 || r.ChannelFailures != 2 {
			t.Errorf("%s: %d clients, %d failed, %d completed, %d failed channels; want 10, 10, 0, 2",
				scenario, r.Clients, r.Failures, r.Completed, r.ChannelFailures)
		}
		if !strings.Contains(stderr.String(), "2 failed (not created or not closed)") {
			t.Errorf("%s: the table does not show the failed channels:\n%s", scenario, stderr.String())
		}
	}
}
