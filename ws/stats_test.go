package ws_test

import (
	"testing"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/wstest"
)

// TestStats: GET /stats counts what happened and gives the memory bound
// and the catch-up histogram, for the viewer's server panel.
func TestStats(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	createChannel(t, srv.URL, "stats-1")
	appendMsg(t, srv.URL, "stats-1", "a")
	appendMsg(t, srv.URL, "stats-1", "b")
	_, body := do(t, "GET", srv.URL+"/stats", "", nil)
	st := decodeJSON[ws.Stats](t, body)
	if st.Appended != 2 || st.ChannelsOpen != 1 || st.MaxBufferedBytes <= 0 || st.Time == 0 {
		t.Errorf("stats after two appends: %+v", st)
	}
	if len(st.Catchup.Le) == 0 || len(st.Catchup.Le) != len(st.Catchup.Counts) {
		t.Errorf("catch-up histogram: %+v", st.Catchup)
	}
}
