package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/auth"
)

const secret = "0123456789abcdef0123456789abcdef"

func mint(t *testing.T, args []string, env map[string]string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(args, func(k string) string { return env[k] }, &out, &errOut, time.Now)
	return strings.TrimSpace(out.String()), err
}

// TestMintedTokenIsAccepted mints tokens and checks them with the
// server's Authorizer.
func TestMintedTokenIsAccepted(t *testing.T) {
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := mint(t, []string{"-sub", "alice", "-publish", "news-alice", "-subscribe", "news-*, chat"}, map[string]string{"JWT_SECRET": secret})
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" || strings.Join(c.Publish, "|") != "news-alice" || strings.Join(c.Subscribe, "|") != "news-*|chat" || c.Admin {
		t.Errorf("claims %+v", c)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expires in %v, want 1h", d)
	}
	r := httptest.NewRequest("POST", "/channels/news-bob/messages", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if err := a.Authorize(r, auth.Publish, "news-bob"); err == nil {
		t.Error("publish to news-bob allowed")
	}

	tok, err = mint(t, []string{"-secret", secret, "-admin", "-ttl", "5m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := a.Verify(context.Background(), tok); err != nil || !c.Admin {
		t.Errorf("admin token: %+v, %v", c, err)
	}
}

func TestMintErrors(t *testing.T) {
	env := map[string]string{"JWT_SECRET": secret}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		msg  string
	}{
		{[]string{"-admin"}, nil, "no secret"},
		{[]string{"-admin", "-secret", "short"}, nil, "at least 32"},
		{[]string{"-sub", "x"}, env, "grant nothing"},
		{[]string{"-publish", "a*b"}, env, `"a*b"`},
		{[]string{"-admin", "-ttl", "-1h"}, env, "must be positive"},
		{[]string{"-admin", "extra"}, env, "unexpected argument"},
		{[]string{"-nope"}, env, "not defined"},
	} {
		if _, err := mint(t, tc.args, tc.env); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.msg)
		}
	}
}
