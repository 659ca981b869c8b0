package ws

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/hub"
)

// TestTextStreamTokenExpiredBeforeStart: a token accepted in the last
// moment of its validity (exp plus the tolerated skew) may expire before
// the text stream writes anything: the answer is 401 saying so, not an
// internal error.
func TestTextStreamTokenExpiredBeforeStart(t *testing.T) {
	h, _, _ := newTestHub(t, hub.Config{})
	if _, err := h.Create(context.Background(), "c", nil, 0); err != nil {
		t.Fatal(err)
	}
	s := NewServer(h, ServerConfig{})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/?id=c", nil)
	s.streamText(rec, req, "c", time.Now().Add(-time.Millisecond))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "expired") ||
		!strings.Contains(rec.Header().Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("%d %q %s, want 401 invalid_token saying the token expired", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
	}
}
