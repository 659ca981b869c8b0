package ws_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/wstest"
)

// TestChannelsAPI exercises create, list, describe, append (with and
// without wait=persisted), history paging and close.
func TestChannelsAPI(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{PersistInterval: time.Hour})
	base := srv.URL
	createChannel(t, base, "a1")
	createChannel(t, base, "a2")
	st, b := do(t, "POST", base+"/channels", "application/json", nil)
	if st != 201 {
		t.Fatalf("create without body: %d %s", st, b)
	}
	for i := 1; i <= 5; i++ {
		if seq := appendMsg(t, base, "a1", fmt.Sprintf("m%d", i)); seq != int64(i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
	}
	// With a one-hour interval nothing is flushed yet, except on demand.
	info := decodeJSON[ws.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
	if info.LastSeq != 5 || info.PersistedSeq != 0 || !info.Open || info.Epoch != "1" {
		t.Errorf("info before flush: %+v", info)
	}
	st, b = do(t, "POST", base+"/channels/a1/messages?wait=persisted", "text/plain", []byte("m6"))
	if st != 200 || decodeJSON[struct{ Seq int64 }](t, b).Seq != 6 {
		t.Fatalf("wait=persisted: %d %s", st, b)
	}
	info = decodeJSON[ws.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
	if info.PersistedSeq != 6 {
		t.Errorf("after wait=persisted, persisted_seq = %d", info.PersistedSeq)
	}
	appendMsg(t, base, "a1", "m7") // buffered only
	// History pages cover the store and the buffer.
	var got []string
	next := int64(0)
	for {
		h := decodeJSON[struct {
			Messages []struct{ Data string }
			Next     int64
		}](t, mustGet(t, fmt.Sprintf("%s/channels/a1/messages?from=%d&limit=3", base, next)))
		if len(h.Messages) == 0 {
			break
		}
		for _, m := range h.Messages {
			got = append(got, m.Data)
		}
		next = h.Next
	}
	if strings.Join(got, ",") != "m1,m2,m3,m4,m5,m6,m7" {
		t.Errorf("history: %v", got)
	}
	list := decodeJSON[struct {
		Channels []ws.ChannelInfo
		Next     string
	}](t, mustGet(t, base+"/channels?limit=2"))
	if len(list.Channels) != 2 || list.Next == "" {
		t.Errorf("list page: %+v", list)
	}
	st, b = do(t, "POST", base+"/channels/a1/close", "", nil)
	if st != 200 || decodeJSON[struct {
		LastSeq int64 `json:"last_seq"`
	}](t, b).LastSeq != 7 {
		t.Fatalf("close: %d %s", st, b)
	}
	info = decodeJSON[ws.ChannelInfo](t, mustGet(t, base+"/channels/a1"))
	if info.Open || info.ClosedAt == nil || info.LastSeq != 7 || info.PersistedSeq != 7 {
		t.Errorf("after close: %+v", info)
	}
	// health
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, b := do(t, "GET", base+p, "", nil); st != 200 {
			t.Errorf("%s: %d %s", p, st, b)
		}
	}
}

func mustGet(t testing.TB, u string) []byte {
	t.Helper()
	st, b := do(t, "GET", u, "", nil)
	if st != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, st, b)
	}
	return b
}
