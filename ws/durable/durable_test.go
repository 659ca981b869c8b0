package durable

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOffsets(t *testing.T) {
	for _, p := range []Pos{{1, 0}, {1, 9}, {1, 10}, {2, 3}, {12, 1 << 40}} {
		got, err := ParseOffset(p.String())
		if err != nil || got != p {
			t.Errorf("ParseOffset(%q) = %+v, %v; want %+v", p.String(), got, err, p)
		}
	}
	// Offsets sort as positions do: by epoch, then seq.
	ordered := []Pos{{1, 0}, {1, 9}, {1, 10}, {1, 100}, {2, 0}, {2, 5}, {10, 1}}
	for i := 1; i < len(ordered); i++ {
		if a, b := ordered[i-1].String(), ordered[i].String(); a >= b {
			t.Errorf("%s >= %s", a, b)
		}
	}
	if p, err := ParseOffset("0000000000000000_0000000000000000"); err != nil || p != (Pos{}) {
		t.Errorf("the zero offset: %+v, %v; want the start", p, err)
	}
	for _, bad := range []string{"", "-1", "now", "0,1", "0 1", "1_2", "000000000000000a_0000000000000000",
		"0000000000000000_0000000000000001",
		"+000000000000001_0000000000000000", "0000000000000001_-000000000000001", "0000000000000001"} {
		if _, err := ParseOffset(bad); err == nil {
			t.Errorf("ParseOffset(%q) succeeded", bad)
		}
	}
}

func TestCheckProducer(t *testing.T) {
	st := Producer{ID: "p", Epoch: 2, Seq: 5}
	var stale *StaleEpochError
	var gap *SeqGapError
	for _, tc := range []struct {
		ok      bool
		epoch   int64
		seq     int64
		dup     bool
		wantErr func(error) bool
	}{
		{ok: false, epoch: 0, seq: 0},
		{ok: false, epoch: 7, seq: 0},
		{ok: false, epoch: 0, seq: 1, wantErr: func(err error) bool { return errors.As(err, &gap) && gap.Expected == 0 }},
		{ok: true, epoch: 1, seq: 0, wantErr: func(err error) bool { return errors.As(err, &stale) && stale.Current == 2 }},
		{ok: true, epoch: 3, seq: 0},
		{ok: true, epoch: 3, seq: 1, wantErr: func(err error) bool { return errors.Is(err, ErrNewEpochSeq) }},
		{ok: true, epoch: 2, seq: 0, dup: true},
		{ok: true, epoch: 2, seq: 5, dup: true},
		{ok: true, epoch: 2, seq: 6},
		{ok: true, epoch: 2, seq: 8, wantErr: func(err error) bool {
			return errors.As(err, &gap) && gap.Expected == 6 && gap.Received == 8
		}},
	} {
		dup, err := CheckProducer(st, tc.ok, Producer{ID: "p", Epoch: tc.epoch, Seq: tc.seq})
		if tc.wantErr != nil {
			if !tc.wantErr(err) {
				t.Errorf("state %v (%v), request %d/%d: err %v", st, tc.ok, tc.epoch, tc.seq, err)
			}
			continue
		}
		if err != nil || dup != tc.dup {
			t.Errorf("state %v (%v), request %d/%d: dup %v, err %v; want dup %v", st, tc.ok, tc.epoch, tc.seq, dup, err, tc.dup)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	req := func(h map[string]string) *http.Request {
		r, _ := http.NewRequest(http.MethodPut, "/v1/stream/x", nil)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		return r
	}
	for _, ttl := range []string{"0", "1", "3600", "9007199254740991"} {
		cfg, err := parseConfig(req(map[string]string{hTTL: ttl}))
		if n, _ := strconv.ParseInt(ttl, 10, 64); err != nil || cfg.TTL != n || cfg.ContentType != defaultContentType {
			t.Errorf("TTL %q: %+v %v", ttl, cfg, err)
		}
	}
	for _, ttl := range []string{"", "-1", "+60", "060", "60.5", "1e3", "abc", "9007199254740992"} {
		if _, err := parseConfig(req(map[string]string{hTTL: ttl})); err == nil {
			t.Errorf("TTL %q accepted", ttl)
		}
	}
	if _, err := parseConfig(req(map[string]string{hTTL: "5", hExpiresAt: "2030-01-01T00:00:00Z"})); err == nil {
		t.Error("TTL with Expires-At accepted")
	}
	for _, exp := range []string{"2030-01-01T00:00:00Z", "2030-01-01T00:00:00.123+02:00"} {
		if cfg, err := parseConfig(req(map[string]string{hExpiresAt: exp})); err != nil || cfg.ExpiresAt.IsZero() {
			t.Errorf("Expires-At %q: %+v %v", exp, cfg, err)
		}
	}
	if _, err := parseConfig(req(map[string]string{hExpiresAt: "tomorrow"})); err == nil {
		t.Error("bad Expires-At accepted")
	}

	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	if p, err := ParseProducer(hdr()); p != nil || err != nil {
		t.Errorf("no producer headers: %v %v", p, err)
	}
	if p, err := ParseProducer(hdr(hProducerID, "a", hProducerEpoch, "1", hProducerSeq, "2")); err != nil ||
		*p != (Producer{ID: "a", Epoch: 1, Seq: 2}) {
		t.Errorf("producer: %v %v", p, err)
	}
	for _, h := range []http.Header{
		hdr(hProducerID, "a"),
		hdr(hProducerEpoch, "0", hProducerSeq, "0"),
		hdr(hProducerID, "", hProducerEpoch, "0", hProducerSeq, "0"),
		hdr(hProducerID, "a", hProducerEpoch, "0", hProducerSeq, "1abc"),
		hdr(hProducerID, "a", hProducerEpoch, "-1", hProducerSeq, "0"),
		hdr(hProducerID, "a", hProducerEpoch, "1e3", hProducerSeq, "0"),
	} {
		if _, err := ParseProducer(h); err == nil {
			t.Errorf("producer headers %v accepted", h)
		}
	}
}

func TestSplitJSON(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
	}{
		{`{"a": 1}`, []string{`{"a":1}`}},
		{`[{"a":1}, {"b":2}]`, []string{`{"a":1}`, `{"b":2}`}},
		{`[[1,2],[3,4]]`, []string{`[1,2]`, `[3,4]`}},
		{`[[[1,2,3]]]`, []string{`[[1,2,3]]`}},
		{`[]`, []string{}},
		{"\"line\\nbreak\"", []string{"\"line\\nbreak\""}},
		{"{\n \"a\" :\n 1\n}", []string{`{"a":1}`}},
		{`42`, []string{`42`}},
	} {
		got, err := splitJSON([]byte(tc.body))
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("splitJSON(%s) = %q, %v; want %q", tc.body, got, err, tc.want)
			continue
		}
		for i := range got {
			if string(got[i]) != tc.want[i] {
				t.Errorf("splitJSON(%s)[%d] = %s, want %s", tc.body, i, got[i], tc.want[i])
			}
		}
	}
	for _, bad := range []string{`{ invalid }`, `[1,`, ``, `{"a":1}{"b":2}`} {
		if _, err := splitJSON([]byte(bad)); err == nil {
			t.Errorf("splitJSON(%q) accepted", bad)
		}
	}
}

// TestSSEDataCannotInject: line breaks of every kind in a payload become
// separate data: lines of one event, so a payload never ends the event or
// starts another.
func TestSSEDataCannotInject(t *testing.T) {
	var buf bytes.Buffer
	writeData(&buf, "text/plain", false, [][]byte{[]byte("a\r\n\r\nevent: control\rdata: x\n\nb")})
	want := "event: data\ndata:a\ndata:\ndata:event: control\ndata:data: x\ndata:\ndata:b\n\n"
	if buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
	if n := strings.Count(buf.String(), "\n\n"); n != 1 {
		t.Fatalf("%d event ends, want 1", n)
	}
	buf.Reset()
	writeData(&buf, "application/octet-stream", true, [][]byte{{0, 1}, {0xff, '\n'}})
	if want := "event: data\ndata:AAH/Cg==\n\n"; buf.String() != want {
		t.Fatalf("binary: got %q, want %q", buf.String(), want)
	}
}

func TestNextCursor(t *testing.T) {
	now := cursorEpoch.Add(1000*cursorInterval + time.Second)
	if got := nextCursor(now, ""); got != "1000" {
		t.Fatalf("cursor = %s, want 1000", got)
	}
	if got := nextCursor(now, "999"); got != "1000" {
		t.Fatalf("cursor after an older one = %s, want 1000", got)
	}
	for range 100 {
		got, _ := strconv.ParseInt(nextCursor(now, "1000"), 10, 64)
		if got <= 1000 || got > 1180 {
			t.Fatalf("cursor after the current one = %d, want in (1000, 1180]", got)
		}
	}
}

func TestParseFork(t *testing.T) {
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hd.Set(kv[i], kv[i+1])
		}
		return hd
	}
	off := "0000000000000001_0000000000000002"
	if f, err := parseFork(h(), "/v1/stream/"); f != nil || err != nil {
		t.Fatalf("no fork headers: %+v %v", f, err)
	}
	f, err := parseFork(h(hForkedFrom, "/v1/stream/src", hForkOffset, off, hForkSub, "3"), "/v1/stream/")
	if err != nil || f.From != "src" || f.Offset == nil || *f.Offset != (Pos{1, 2}) || f.Sub != 3 {
		t.Fatalf("fork: %+v %v", f, err)
	}
	if f, err := parseFork(h(hForkedFrom, "http://example.com/v1/stream/src"), "/v1/stream/"); err != nil || f.From != "src" || f.Offset != nil {
		t.Fatalf("fork from a URL: %+v %v", f, err)
	}
	for _, bad := range []http.Header{
		h(hForkSub, "0"),
		h(hForkOffset, off),
		h(hForkedFrom, "src", hForkSub, "1"),
		h(hForkedFrom, "src", hForkOffset, "bad"),
		h(hForkedFrom, "src", hForkOffset, off, hForkSub, "-1"),
		h(hForkedFrom, "src", hForkOffset, off, hForkSub, "05"),
		h(hForkedFrom, "src", hForkOffset, off, hForkSub, "1.5"),
	} {
		if f, err := parseFork(bad, "/v1/stream/"); err == nil {
			t.Errorf("fork headers %v accepted: %+v", bad, f)
		}
	}
}

// TestSourceName: every spelling of a fork's source comes down to one name,
// the one the rights check and the store both use.
func TestSourceName(t *testing.T) {
	const p = "/v1/stream/"
	for in, want := range map[string]string{
		"src":                             "src",
		"a:b":                             "a:b",
		"/v1/stream/src":                  "src",
		"/v1/stream/%73rc":                "src",
		"/v1/stream//src":                 "src",
		"/v1//stream/./src":               "src",
		"/v1/stream/x/../src":             "src",
		"a.x://h/v1/stream/src":           "src",
		"a.x:/v1/stream/src":              "src",
		"//host:1/v1/stream/a.y/../%73rc": "src",
		"/v1/stream/%25":                  "%",
	} {
		if got, err := SourceName(in, p); err != nil || got != want {
			t.Errorf("SourceName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "/", "/v1/stream/", "/v1/stream/a/b", "/v1/stream/a%2Fb", "/v1/stream/x/../../src",
		"v1/stream/src", "/v1/stream/src?x", "/v1/stream/src#x", "/v1/stream/src?",
		"http://u:p@h/v1/stream/src", "/v1/stream/%zz", "/other/src",
	} {
		if got, err := SourceName(in, p); err == nil {
			t.Errorf("SourceName(%q) = %q, want an error", in, got)
		}
	}
}
