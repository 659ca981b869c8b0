package durable

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzSourceName: a Stream-Forked-From value either names one stream, a
// name without "/", that its path spelling names again, or is refused.
func FuzzSourceName(f *testing.F) {
	for _, s := range []string{"src", "/v1/stream/src", "a.x://h/v1/stream/secret", "/v1/stream/a/../b",
		"/v1/stream/%2F", "//h/v1/stream/%73", "/v1/stream//x", "a:b", "/v1/stream/x?y", "%zz/"} {
		f.Add(s)
	}
	const prefix = "/v1/stream/"
	f.Fuzz(func(t *testing.T, v string) {
		name, err := SourceName(v, prefix)
		if err != nil {
			return
		}
		if name == "" {
			t.Fatalf("SourceName(%q) = \"\"", v)
		}
		if strings.Contains(v, "/") && strings.Contains(name, "/") {
			t.Fatalf("SourceName(%q) = %q, a name with a /", v, name)
		}
		if strings.Contains(name, "/") {
			return // a bare name, taken as it is: the server checks it as an id
		}
		if again, err := SourceName(prefix+url.PathEscape(name), prefix); err != nil || again != name {
			t.Fatalf("SourceName(%q) = %q, but its path names %q, %v", v, name, again, err)
		}
	})
}

// FuzzHeaders: the headers and query a Durable Streams request carries
// parse into values within the protocol's bounds, or are refused; an
// offset that parses prints back to itself.
func FuzzHeaders(f *testing.F) {
	f.Add("p", "0", "1", "text/plain", "60", "", "/v1/stream/src", "0000000000000001_0000000000000002", "3",
		"offset=-1&cursor=5")
	f.Add("\xff", "00", "-1", "a/b; x=\"", "1e3", "2025-01-01T00:00:00Z", "a.x://h/v1/stream/s", "-1", "01",
		"offset=now&live=sse")
	f.Fuzz(func(t *testing.T, id, epoch, seq, ct, ttl, exp, from, off, sub, query string) {
		h := http.Header{}
		set := func(k, v string) {
			if v != "" {
				h[k] = []string{v}
			}
		}
		set(hProducerID, id)
		set(hProducerEpoch, epoch)
		set(hProducerSeq, seq)
		set("Content-Type", ct)
		set(hTTL, ttl)
		set(hExpiresAt, exp)
		set(hForkedFrom, from)
		set(hForkOffset, off)
		set(hForkSub, sub)
		if p, err := ParseProducer(h); err == nil && p != nil {
			if p.ID == "" || p.Epoch < 0 || p.Epoch > maxSafeInt || p.Seq < 0 || p.Seq > maxSafeInt {
				t.Fatalf("producer %+v accepted", p)
			}
		}
		r := &http.Request{Method: http.MethodGet, Header: h, URL: &url.URL{Path: "/v1/stream/s", RawQuery: query}}
		if cfg, err := parseConfig(r); err == nil && (cfg.TTL < 0 || mediaType(cfg.ContentType) == "") {
			t.Fatalf("config %+v accepted", cfg)
		}
		if fk, err := parseFork(h, "/v1/stream/"); err == nil && fk != nil {
			if fk.From == "" || fk.Sub < 0 || (fk.Sub > 0 && fk.Offset == nil) {
				t.Fatalf("fork %+v accepted", fk)
			}
		}
		if rq, err := parseReadQuery(r); err == nil {
			if back, err := ParseOffset(rq.from.String()); err == nil && back != rq.from {
				t.Fatalf("offset %v prints as %s, which parses as %v", rq.from, rq.from.String(), back)
			}
		}
		if p, err := ParseOffset(off); err == nil {
			if back, err := ParseOffset(p.String()); err != nil || back != p {
				t.Fatalf("offset %q parses as %v, which prints as %s: %v %v", off, p, p.String(), back, err)
			}
		}
		nextCursor(cursorEpoch, query) // any client cursor: no panic, no loop
	})
}

// FuzzSplitJSON: a JSON body is either refused or split into messages
// that are each valid JSON on one line.
func FuzzSplitJSON(f *testing.F) {
	for _, s := range []string{`[1,2,3]`, `{"a":[1,2]}`, `[]`, `"x\ny"`, " [ {\"a\" :\n1} ] ", `[[1],[2]]`, `nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, err := splitJSON(body)
		if err != nil {
			return
		}
		if len(msgs) == 0 && bytes.TrimSpace(body)[0] != '[' {
			t.Fatalf("%q: no message", body)
		}
		for _, m := range msgs {
			if !json.Valid(m) || bytes.ContainsAny(m, "\r\n") {
				t.Fatalf("%q: message %q", body, m)
			}
		}
	})
}
