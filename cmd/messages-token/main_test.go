package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
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

// TestMintIssuerAudience mints tokens with -issuer and -audience (or
// JWT_ISSUER and JWT_AUDIENCE, the server's variables) that a server
// checking iss and aud accepts, and checks the claims as written.
func TestMintIssuerAudience(t *testing.T) {
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte(secret), Issuer: "https://id.example/", Audience: "messages"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	env := map[string]string{"JWT_SECRET": secret}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		payload string // the iss and aud as they appear in the token
	}{
		{"flags", []string{"-admin", "-issuer", "https://id.example/", "-audience", "messages"}, env, `"iss":"https://id.example/","aud":["messages"]`},
		{"several audiences", []string{"-admin", "-issuer", "https://id.example/", "-audience", "billing, messages"}, env, `"aud":["billing","messages"]`},
		{"env", []string{"-admin"}, map[string]string{"JWT_SECRET": secret, "JWT_ISSUER": "https://id.example/", "JWT_AUDIENCE": "messages"}, `"iss":"https://id.example/","aud":["messages"]`},
		{"flags over env", []string{"-admin", "-issuer", "https://id.example/", "-audience", "messages"}, map[string]string{"JWT_SECRET": secret, "JWT_ISSUER": "https://other.example/", "JWT_AUDIENCE": "other"}, `"iss":"https://id.example/","aud":["messages"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := mint(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Verify(context.Background(), tok); err != nil {
				t.Errorf("a server checking iss and aud refuses the token: %v", err)
			}
			payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(payload), tc.payload) {
				t.Errorf("claims %s, want %s", payload, tc.payload)
			}
		})
	}
	// Without them the token carries neither claim, as before, and a
	// server checking them refuses it.
	tok, err := mint(t, []string{"-admin"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1]); strings.Contains(string(payload), `"iss"`) || strings.Contains(string(payload), `"aud"`) {
		t.Errorf("claims %s: iss or aud without -issuer or -audience", payload)
	}
	if _, err := a.Verify(context.Background(), tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("a token without iss and aud: %v, want ErrInvalidToken", err)
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
