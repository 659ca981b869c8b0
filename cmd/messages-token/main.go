// Command messages-token mints an HS256 token for a messages server started
// with -jwt-secret (or JWT_SECRET), for tests, scripts and the viewer.
//
//	JWT_SECRET=... messages-token -sub alice -subscribe 'news-*' -publish 'news-alice' -ttl 24h
//
// For a server started with -jwt-issuer or -jwt-audience, give -issuer and
// -audience (or JWT_ISSUER and JWT_AUDIENCE, as for the server).
//
// It prints the token on stdout.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/internal/cli"
	"github.com/messages-server/messages/ws/auth"
)

func main() {
	cli.Exit("messages-token", run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, time.Now))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer, now func() time.Time) error {
	fs := flag.NewFlagSet("messages-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "HS256 secret, at least 32 bytes, as given to the server's -jwt-secret (env JWT_SECRET; prefer the env: flags show in ps)")
	sub := fs.String("sub", "", "subject (sub): who the token is for")
	issuer := fs.String("issuer", "", "issuer (iss), as given to the server's -jwt-issuer (env JWT_ISSUER)")
	audience := fs.String("audience", "", "comma-separated audiences (aud), one of them as given to the server's -jwt-audience (env JWT_AUDIENCE)")
	publish := fs.String("publish", "", "comma-separated channel patterns the token may create, append to and close: an id, a prefix ending in *, or *")
	subscribe := fs.String("subscribe", "", "comma-separated channel patterns the token may read")
	admin := fs.Bool("admin", false, "grant every right, plus listing and deleting channels")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: messages-token [flags]\n\nMints an HS256 token for a messages server started with -jwt-secret.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	if *secret == "" {
		*secret = getenv("JWT_SECRET")
	}
	if *secret == "" {
		return errors.New("no secret: set JWT_SECRET or -secret to the server's -jwt-secret")
	}
	if *issuer == "" {
		*issuer = getenv("JWT_ISSUER")
	}
	if *audience == "" {
		*audience = getenv("JWT_AUDIENCE")
	}
	if *ttl <= 0 {
		return fmt.Errorf("-ttl %v: must be positive", *ttl)
	}
	c := &auth.Claims{
		Publish:   patterns(*publish),
		Subscribe: patterns(*subscribe),
		Admin:     *admin,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   *sub,
			Issuer:    *issuer,
			Audience:  patterns(*audience),
			IssuedAt:  jwt.NewNumericDate(now()),
			ExpiresAt: jwt.NewNumericDate(now().Add(*ttl)),
		},
	}
	if !c.Admin && len(c.Publish) == 0 && len(c.Subscribe) == 0 {
		return errors.New("the token would grant nothing: give -publish, -subscribe or -admin")
	}
	tok, err := auth.SignHS256([]byte(*secret), c)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "auth: "))
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// patterns splits a comma-separated list (of channel patterns or
// audiences), dropping empty entries.
func patterns(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
