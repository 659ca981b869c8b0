package durable

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// Protocol header names.
const (
	hNextOffset    = "Stream-Next-Offset"
	hUpToDate      = "Stream-Up-To-Date"
	hCursor        = "Stream-Cursor"
	hClosed        = "Stream-Closed"
	hTTL           = "Stream-TTL"
	hExpiresAt     = "Stream-Expires-At"
	hSeq           = "Stream-Seq"
	hSSEEncoding   = "Stream-SSE-Data-Encoding"
	hProducerID    = "Producer-Id"
	hProducerEpoch = "Producer-Epoch"
	hProducerSeq   = "Producer-Seq"
	hExpectedSeq   = "Producer-Expected-Seq"
	hReceivedSeq   = "Producer-Received-Seq"
	hForkedFrom    = "Stream-Forked-From"
	hForkOffset    = "Stream-Fork-Offset"
	hForkSub       = "Stream-Fork-Sub-Offset"
)

// defaultContentType is a stream's type when PUT names none.
const defaultContentType = "application/octet-stream"

// mediaType is the lower-case type/subtype of a Content-Type, without
// parameters; "" if it does not parse.
func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// sameType reports whether two content types name the same media type.
func sameType(a, b string) bool { return mediaType(a) == mediaType(b) }

// SameType reports whether two content types name the same media type
// (type and subtype, case-insensitive, parameters aside).
func SameType(a, b string) bool { return sameType(a, b) }

// IsJSON reports whether a stream of content type ct is in JSON mode.
func IsJSON(ct string) bool { return mediaType(ct) == "application/json" }

// IsText reports whether a stream of content type ct carries text (text/*
// or JSON); any other stream is binary, and travels base64-encoded where a
// text transport carries it (SSE, WebSocket frames).
func IsText(ct string) bool {
	mt := mediaType(ct)
	return strings.HasPrefix(mt, "text/") || mt == "application/json"
}

// maxSafeInt is the largest integer JavaScript represents exactly.
const maxSafeInt = 1<<53 - 1

// parseCount parses a non-negative decimal integer without sign, leading
// zeros, fraction or exponent, at most maxSafeInt.
func parseCount(s string) (int64, bool) {
	if s == "" || len(s) > 16 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n <= maxSafeInt
}

// parseConfig reads a PUT's Content-Type, Stream-TTL and Stream-Expires-At.
func parseConfig(r *http.Request) (Config, error) {
	cfg := Config{ContentType: strings.TrimSpace(r.Header.Get("Content-Type"))}
	if cfg.ContentType == "" {
		cfg.ContentType = defaultContentType
	}
	if mediaType(cfg.ContentType) == "" {
		return cfg, errors.New("malformed Content-Type")
	}
	ttl, hasTTL := r.Header.Get(hTTL), len(r.Header.Values(hTTL)) > 0
	exp, hasExp := r.Header.Get(hExpiresAt), len(r.Header.Values(hExpiresAt)) > 0
	if hasTTL && hasExp {
		return cfg, errors.New("give Stream-TTL or Stream-Expires-At, not both")
	}
	if hasTTL {
		n, ok := parseCount(ttl)
		if !ok {
			return cfg, errors.New("Stream-TTL must be a whole number of seconds, without sign or leading zeros")
		}
		cfg.TTL = n
	}
	if hasExp {
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(exp))
		if err != nil {
			return cfg, errors.New("Stream-Expires-At must be an RFC 3339 timestamp")
		}
		cfg.ExpiresAt = t.UTC().Truncate(time.Microsecond) // as the store keeps it
	}
	return cfg, nil
}

// ParseProducer reads the three producer headers (Producer-Id,
// Producer-Epoch, Producer-Seq) of h: all or none; nil when none.
func ParseProducer(h http.Header) (*Producer, error) {
	id, hasID := h.Get(hProducerID), len(h.Values(hProducerID)) > 0
	ep, hasEp := h.Get(hProducerEpoch), len(h.Values(hProducerEpoch)) > 0
	sq, hasSq := h.Get(hProducerSeq), len(h.Values(hProducerSeq)) > 0
	if !hasID && !hasEp && !hasSq {
		return nil, nil
	}
	if !hasID || !hasEp || !hasSq {
		return nil, errors.New("Producer-Id, Producer-Epoch and Producer-Seq go together")
	}
	if id == "" {
		return nil, errors.New("Producer-Id must not be empty")
	}
	epoch, ok1 := parseCount(ep)
	seq, ok2 := parseCount(sq)
	if !ok1 || !ok2 {
		return nil, errors.New("Producer-Epoch and Producer-Seq must be non-negative integers up to 2^53-1")
	}
	return &Producer{ID: id, Epoch: epoch, Seq: seq}, nil
}

// parseFork reads Stream-Forked-From (a stream path under prefix, or a
// name), Stream-Fork-Offset and Stream-Fork-Sub-Offset; nil when none.
func parseFork(h http.Header, prefix string) (*Fork, error) {
	from := h.Get(hForkedFrom)
	off, hasOff := h.Get(hForkOffset), len(h.Values(hForkOffset)) > 0
	sub, hasSub := h.Get(hForkSub), len(h.Values(hForkSub)) > 0
	if from == "" {
		if hasOff || hasSub {
			return nil, errors.New("Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From")
		}
		return nil, nil
	}
	src, err := SourceName(from, prefix)
	if err != nil {
		return nil, err
	}
	f := &Fork{From: src}
	if hasOff {
		p, err := ParseOffset(off)
		if off == "-1" {
			p, err = Pos{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("Stream-Fork-Offset: %w", err)
		}
		f.Offset = &p
	}
	if hasSub {
		n, ok := parseCount(sub)
		if !ok {
			return nil, errors.New("Stream-Fork-Sub-Offset must be a non-negative integer without sign or leading zeros")
		}
		if n > 0 && !hasOff {
			return nil, errors.New("Stream-Fork-Sub-Offset needs Stream-Fork-Offset")
		}
		f.Sub = n
	}
	return f, nil
}

// SourceName returns the stream name that a Stream-Forked-From value v
// names, in the one form the store and the rights check both use. v is a
// stream's path (prefix + name), an absolute URL whose path is one (its
// scheme and host are ignored: the source is a stream of this server), or,
// without a "/", a bare name taken as it is. A path is percent-decoded once,
// after its dot segments and repeated slashes are resolved as a URL's are;
// a query, a fragment, a path outside prefix or a name with a "/" (such as
// an encoded %2F) is an error.
func SourceName(v, prefix string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("Stream-Forked-From must be a stream path (%s{name}), a URL of one or a stream name: %s", prefix, why)
	}
	if !strings.Contains(v, "/") {
		if v == "" {
			return bad("it is empty")
		}
		if v == "." || v == ".." {
			return bad("it is a dot segment, which names no stream")
		}
		return v, nil
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return bad("it does not parse as a URL")
	case u.Opaque != "" || u.User != nil:
		return bad("it is not a path")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(v, "#"):
		return bad("it has a query or a fragment")
	}
	p := u.EscapedPath()
	if !strings.HasPrefix(p, "/") {
		return bad("a path must start with /")
	}
	p = path.Clean(p)
	escaped, ok := strings.CutPrefix(p, prefix)
	if !ok || escaped == "" || strings.Contains(escaped, "/") {
		return bad("the path names no stream under " + prefix)
	}
	name, err := url.PathUnescape(escaped)
	if err != nil || strings.Contains(name, "/") || name == "" || name == "." || name == ".." {
		return bad("the stream name is malformed")
	}
	return name, nil
}

// splitJSON validates a JSON body and splits it into messages: an array is
// flattened one level, any other value is one message. Each message is
// stored compact, so that it holds no newline.
func splitJSON(body []byte) ([][]byte, error) {
	if !json.Valid(body) {
		return nil, errors.New("the body is not valid JSON")
	}
	trimmed := bytes.TrimSpace(body)
	var elems []json.RawMessage
	if trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &elems); err != nil {
			return nil, errors.New("the body is not valid JSON")
		}
	} else {
		elems = []json.RawMessage{trimmed}
	}
	// Each message gets its own allocation of its own size (Unmarshal
	// copied each element), so that its memory is what it is counted at.
	out := make([][]byte, len(elems))
	var b bytes.Buffer
	for i, e := range elems {
		if !bytes.ContainsAny(e, " \t\r\n") {
			out[i] = e // compact already
			continue
		}
		b.Reset()
		if err := json.Compact(&b, e); err != nil {
			return nil, errors.New("the body is not valid JSON")
		}
		out[i] = bytes.Clone(b.Bytes())
	}
	return out, nil
}

// cursorEpoch and cursorInterval define Stream-Cursor values: the number of
// 20-second intervals since 2024-10-09 UTC.
var cursorEpoch = time.Date(2024, 10, 9, 0, 0, 0, 0, time.UTC)

const cursorInterval = 20 * time.Second

// nextCursor is the cursor for a live response to a client that sent
// client (may be ""): the current interval, or a later one when the client
// is already there, so that cursors only grow and caches never loop.
func nextCursor(now time.Time, client string) string {
	cur := int64(now.Sub(cursorEpoch) / cursorInterval)
	if c, err := strconv.ParseInt(client, 10, 64); err == nil && c >= cur {
		cur = c + 1 + rand.Int64N(180) // 20 s to 1 h of jitter
	}
	return strconv.FormatInt(cur, 10)
}
