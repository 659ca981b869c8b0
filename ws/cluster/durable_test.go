package cluster_test

import (
	"bufio"
	"context"
	"github.com/messages-server/messages/ws/wstest"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamReq sends a Durable Streams request with headers (name, value
// pairs) and returns the response, its body read.
func streamReq(t testing.TB, method, u, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// mustStream sends a Durable Streams request and fails t unless the
// status is want.
func mustStream(t testing.TB, want int, method, u, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	resp, b := streamReq(t, method, u, body, headers...)
	if resp.StatusCode != want {
		t.Fatalf("%s %s %v: %d %s, want %d", method, u, headers, resp.StatusCode, b, want)
	}
	return resp, b
}

func producer(seq string) []string {
	return []string{"Content-Type", "text/plain", "Producer-Id", "p", "Producer-Epoch", "0", "Producer-Seq", seq}
}

// TestDurableStreamThroughAnyNode: a stream whose channel node 1 owns is
// written through node 2 (its idempotent producer's state checked and
// kept by the owner, a retry answered as a duplicate), read through node
// 3 (catch-up and long-poll), closed through node 2 and deleted through
// node 2.
func TestDurableStreamThroughAnyNode(t *testing.T) {
	_, nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	u := func(n *testNode) string { return n.URL + "/v1/stream/s" }
	mustStream(t, http.StatusCreated, http.MethodPut, u(a), "", "Content-Type", "text/plain")
	rec, err := a.store.Channel(context.Background(), "s")
	if err != nil || rec.Owner != a.id {
		t.Fatalf("after the create on %s: owner %q (%v)", a.id, rec.Owner, err)
	}
	// Creating it again through another node with the same configuration
	// is a no-op.
	mustStream(t, http.StatusOK, http.MethodPut, u(b), "", "Content-Type", "text/plain")

	mustStream(t, http.StatusOK, http.MethodPost, u(b), "m1", producer("0")...)
	resp, _ := mustStream(t, http.StatusNoContent, http.MethodPost, u(b), "m1", producer("0")...)
	if got := resp.Header.Get("Producer-Seq"); got != "0" {
		t.Errorf("duplicate: Producer-Seq %q, want 0", got)
	}
	mustStream(t, http.StatusOK, http.MethodPost, u(b), "m2", append(producer("1"), "Stream-Seq", "a")...)
	// The owner's state, not node 2's, decides: a gap and a Stream-Seq
	// that does not grow are refused through node 3 too.
	resp, _ = mustStream(t, http.StatusConflict, http.MethodPost, u(c), "x", producer("5")...)
	if got := resp.Header.Get("Producer-Expected-Seq"); got != "2" {
		t.Errorf("gap: Producer-Expected-Seq %q, want 2", got)
	}
	mustStream(t, http.StatusConflict, http.MethodPost, u(c), "x", "Content-Type", "text/plain", "Stream-Seq", "a")
	if got := metric(t, b, "messages_cluster_forwards_total"); got == 0 {
		t.Error("node 2 forwarded nothing: the appends did not go to the owner")
	}
	if rec, _ := a.store.Channel(context.Background(), "s"); rec.Owner != a.id {
		t.Errorf("owner after the appends: %q, want %q", rec.Owner, a.id)
	}

	// Catch-up through node 3.
	resp, body := mustStream(t, http.StatusOK, http.MethodGet, u(c)+"?offset=-1", "")
	if body != "m1m2" {
		t.Errorf("catch-up through node 3: %q, want m1m2", body)
	}
	next := resp.Header.Get("Stream-Next-Offset")
	// Long-poll through node 3, answered by an append through node 2.
	type result struct {
		status int
		body   string
	}
	polled := make(chan result, 1)
	go func() {
		resp, err := http.Get(u(c) + "?offset=" + next + "&live=long-poll")
		if err != nil {
			polled <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		polled <- result{resp.StatusCode, string(b)}
	}()
	wstest.WaitFor(t, 10*time.Second, "the long-poll to wait on node 3", func() bool { return c.hub.Followers() == 1 })
	mustStream(t, http.StatusOK, http.MethodPost, u(b), "m3", producer("2")...)
	select {
	case r := <-polled:
		if r.status != http.StatusOK || r.body != "m3" {
			t.Errorf("long-poll through node 3: %d %q, want 200 m3", r.status, r.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long-poll through node 3 did not answer")
	}

	// SSE through node 3: the messages, then the close through node 2.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u(c)+"?offset=-1&live=sse", nil)
	sse, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Body.Close()
	br := bufio.NewReader(sse.Body)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "m3\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE through node 3 before the close: %v after %q", err, seen.String())
		}
		seen.WriteString(line)
	}
	// Close through node 2.
	resp, _ = mustStream(t, http.StatusNoContent, http.MethodPost, u(b), "", "Stream-Closed", "true")
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), `"streamClosed":true`) {
		t.Errorf("SSE through node 3 after the close: %q (%v), want the end of the stream", rest, err)
	}
	if resp.Header.Get("Stream-Closed") != "true" {
		t.Error("close through node 2: no Stream-Closed: true")
	}
	resp, _ = mustStream(t, http.StatusOK, http.MethodHead, u(c), "")
	if resp.Header.Get("Stream-Closed") != "true" {
		t.Error("HEAD through node 3 after the close: no Stream-Closed: true")
	}
	mustStream(t, http.StatusConflict, http.MethodPost, u(c), "m4", "Content-Type", "text/plain")
	if got, want := storedData(t, a.store, "s"), []string{"m1", "m2", "m3"}; !slices.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}

	mustStream(t, http.StatusNoContent, http.MethodDelete, u(b), "")
	for _, n := range nodes {
		mustStream(t, http.StatusNotFound, http.MethodGet, u(n)+"?offset=-1", "")
	}
}

// TestDurableStreamOwnerStops: a node that knew a stream before another
// node recorded its producer's state takes the stream over when that
// owner stops, and continues the producer from the state in the store,
// not from what it had read before.
func TestDurableStreamOwnerStops(t *testing.T) {
	_, nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	mustStream(t, http.StatusCreated, http.MethodPut, a.URL+"/v1/stream/t", "", "Content-Type", "text/plain")
	// Node 2 reads the stream's state before the producer's first append.
	mustStream(t, http.StatusOK, http.MethodHead, b.URL+"/v1/stream/t", "")
	mustStream(t, http.StatusOK, http.MethodPost, b.URL+"/v1/stream/t", "m1", producer("0")...)
	mustStream(t, http.StatusOK, http.MethodPost, b.URL+"/v1/stream/t", "m2", producer("1")...)
	a.stop()
	mustStream(t, http.StatusNoContent, http.MethodPost, b.URL+"/v1/stream/t", "m2", producer("1")...)
	mustStream(t, http.StatusOK, http.MethodPost, b.URL+"/v1/stream/t", "m3", producer("2")...)
	if rec, err := b.store.Channel(context.Background(), "t"); err != nil || rec.Owner != b.id {
		t.Errorf("owner after node 1 stopped: %q (%v), want %q", rec.Owner, err, b.id)
	}
	if got, want := storedData(t, b.store, "t"), []string{"m1", "m2", "m3"}; !slices.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
}

// TestBadHeaderThroughAnotherNode: appends with a Producer-Id or a
// Stream-Seq the store cannot hold, sent through a node that does not own
// the stream, are refused with 400 there, between good appends through
// the same node: every good append is stored and the stream keeps its
// epoch (a bad value used to fail the owner's batch, its channel, and the
// good appends in it).
func TestBadHeaderThroughAnotherNode(t *testing.T) {
	_, nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	mustStream(t, http.StatusCreated, http.MethodPut, a.URL+"/v1/stream/s", "", "Content-Type", "text/plain")
	before, err := a.store.Channel(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	bad := [][]string{
		{"Producer-Id", "p\xff", "Producer-Epoch", "0", "Producer-Seq", "0"},
		{"Producer-Id", strings.Repeat("0123456789abcdef", 700), "Producer-Epoch", "0", "Producer-Seq", "0"},
		{"Stream-Seq", "1\xff"},
	}
	var want []string
	for i := range 30 {
		msg := "good " + strconv.Itoa(i) + "\n"
		mustStream(t, http.StatusNoContent, http.MethodPost, b.URL+"/v1/stream/s", msg, "Content-Type", "text/plain")
		want = append(want, msg)
		h := bad[i%len(bad)]
		resp, body := streamReq(t, http.MethodPost, b.URL+"/v1/stream/s", "bad\n", append([]string{"Content-Type", "text/plain"}, h...)...)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, h[0]) {
			t.Fatalf("bad %s through %s: %d %s, want 400 naming it", h[0], b.id, resp.StatusCode, body)
		}
	}
	_, body := mustStream(t, http.StatusOK, http.MethodGet, b.URL+"/v1/stream/s?offset=-1", "")
	if body != strings.Join(want, "") {
		t.Errorf("stream holds %q, want %q", body, strings.Join(want, ""))
	}
	after, err := a.store.Channel(context.Background(), "s")
	if err != nil || after.Epoch != before.Epoch {
		t.Errorf("epoch %d (%v), want %d: the channel failed", after.Epoch, err, before.Epoch)
	}
}
