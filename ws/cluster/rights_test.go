package cluster_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/auth"
)

// TestForkRightsThroughAnotherNode: a token that may read only "a.*"
// cannot fork "secretstream", whose channel node 1 owns, through node 2,
// whatever the spelling of Stream-Forked-From; a stream it may read it
// forks there.
func TestForkRightsThroughAnotherNode(t *testing.T) {
	const secret = "a test secret that is at least 32 bytes long"
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	withAuth := func(s *nodeSetup) { s.server = func(c *ws.ServerConfig) { c.Auth = a } }
	_, nodes := startCluster(t, 2, withAuth)
	mint := func(c auth.Claims) string {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
		tok, err := auth.SignHS256([]byte(secret), &c)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	admin, limited := mint(auth.Claims{Admin: true}), mint(auth.Claims{Publish: []string{"a.*"}, Subscribe: []string{"a.*"}})
	for _, name := range []string{"secretstream", "a.src"} {
		mustStream(t, http.StatusCreated, http.MethodPut, nodes[0].URL+"/v1/stream/"+name, "data of "+name,
			"Content-Type", "text/plain", "Authorization", admin)
	}
	for i, from := range []string{
		"a.x://h/v1/stream/secretstream", "a.x:/v1/stream/secretstream", "/v1/stream/%73ecretstream",
		"/v1/stream/a.x/../secretstream", "//a.x/v1/stream//secretstream", "secretstream",
	} {
		fork := nodes[1].URL + "/v1/stream/a.fork" + strconv.Itoa(i)
		mustStream(t, http.StatusForbidden, http.MethodPut, fork, "", "Stream-Forked-From", from, "Authorization", limited)
		mustStream(t, http.StatusNotFound, http.MethodHead, fork, "", "Authorization", admin)
	}
	fork := nodes[1].URL + "/v1/stream/a.fork"
	mustStream(t, http.StatusCreated, http.MethodPut, fork, "", "Stream-Forked-From", "a.x://h/v1/stream/a.src", "Authorization", limited)
	if _, b := mustStream(t, http.StatusOK, http.MethodGet, fork+"?offset=-1", "", "Authorization", limited); b != "data of a.src" {
		t.Fatalf("the fork reads %q", b)
	}
}
