package wire

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendJSONString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          `"plain"`,
		"a\"b\\c":        `"a\"b\\c"`,
		"line\n\ttab\r":  `"line\n\ttab\r"`,
		"\x00\x1f":       `"\u0000\u001f"`,
		"é ü 日本 😀":       `"é ü 日本 😀"`,
		"\u2028\u2029x":  `"\u2028\u2029x"`,
		"<b>&amp;</b>":   `"<b>&amp;</b>"`,
		"":               `""`,
		"ends with \\":   `"ends with \\"`,
		"\u00e2\u0080ok": "\"\u00e2\u0080ok\"",
	} {
		if got := string(AppendJSONString(nil, []byte(in))); got != want {
			t.Errorf("AppendJSONString(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzFrameRoundTrip checks that what the server encodes the decoder
// reads back exactly, whatever the bytes: data that is not valid UTF-8
// (which a text channel should not hold, but may have stored before the
// server refused it) travels base64-encoded, so that every frame is a
// valid WebSocket text message. A run encoded from stored rows is the
// same, byte for byte, as the batch of the same messages.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte("hello\n"), int64(1))
	f.Add([]byte("\u2028\x00\"\\"), int64(99))
	f.Add([]byte("ab\xffcd"), int64(5))
	f.Fuzz(func(t *testing.T, data []byte, seq int64) {
		if seq < 1 {
			seq = 1
		}
		m := NewMessage(seq, 123, data)
		if !utf8.Valid(m.Encoded()) {
			t.Fatalf("frame %q is not valid UTF-8", m.Encoded())
		}
		fr, err := DecodeFrame(m.Encoded())
		if err != nil {
			t.Fatalf("decode %s: %v", m.Encoded(), err)
		}
		if fr.Seq != seq || fr.Data[0] != string(data) || fr.Time[0] != 123 {
			t.Fatalf("round trip: %+v", fr)
		}
		if (fr.Encoding == EncodingBase64) == utf8.Valid(data) {
			t.Fatalf("data %q came with encoding %q", data, fr.Encoding)
		}
		for _, other := range [][]byte{data, []byte("text"), {0xfe}} {
			m2 := NewMessage(seq+1, 124, other)
			batch := AppendMessages(nil, []*Message{m, m2})
			bf, err := DecodeFrame(batch)
			if err != nil || !utf8.Valid(batch) || len(bf.Data) != 2 || bf.Data[0] != string(data) ||
				bf.Data[1] != string(other) || bf.Seq != seq {
				t.Fatalf("batch round trip of %q, %q: %q: %+v %v", data, other, batch, bf, err)
			}
			rows := [][]byte{data, other}
			run := AppendRun(nil, seq, 2, func(i int) (int64, []byte) { return 123 + int64(i), rows[i] })
			if string(run) != string(batch) {
				t.Fatalf("AppendRun %q, AppendMessages %q", run, batch)
			}
		}
		if one := AppendRun(nil, seq, 1, func(int) (int64, []byte) { return 123, data }); string(one) != string(m.Encoded()) {
			t.Fatalf("AppendRun of one: %q, NewMessage: %q", one, m.Encoded())
		}
	})
}

// FuzzDecodeCanonical checks the fast decoder against encoding/json: what
// it accepts, the general decoder accepts too, with the same result.
func FuzzDecodeCanonical(f *testing.F) {
	f.Add([]byte(`{"type":"message","seq":41,"time":1764300000123456,"data":"41: c1\n"}`))
	f.Add([]byte(`{"type":"batch","seq":1,"time":[1,2],"data":["a\"b","\u00e9\ud83d\ude00"]}`))
	f.Add([]byte(`{"type":"message","seq":01,"time":1,"data":"x"}`))
	f.Add([]byte(`{"type":"batch","seq":3,"time":[1],"data":["x","y"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeCanonical(b)
		if !ok {
			return
		}
		slow, err := decodeGeneral(b)
		if err != nil {
			t.Fatalf("fast decoder accepted %q, general one refused it: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast %+v, general %+v", b, fast, slow)
		}
	})
}

func TestDecodeCanonical(t *testing.T) {
	for _, m := range []*Message{NewMessage(1, 2, []byte("plain")), NewMessage(7, 8, []byte("esc\"aped\n\u2028é")),
		NewMessage(9, 9, []byte("a\tb\\c\"d\r\n\x01é"))} {
		f, ok := decodeCanonical(m.Encoded())
		if !ok || f.Data[0] != string(m.Data) || f.Seq != m.Seq || f.Time[0] != m.Time {
			t.Errorf("decodeCanonical(%s) = %+v, %v", m.Encoded(), f, ok)
		}
	}
	batch := AppendMessages(nil, []*Message{NewMessage(5, 1, []byte("a")), NewMessage(6, 2, []byte("b\\"))})
	if f, ok := decodeCanonical(batch); !ok || len(f.Data) != 2 || f.Data[1] != "b\\" || f.Seq != 5 {
		t.Errorf("decodeCanonical(%s) = %+v, %v", batch, f, ok)
	}
	for _, bad := range []string{
		`{"type":"message","seq":1,"time":2,"data":"x"} `,
		`{"type":"message","seq":0,"time":2,"data":"x"}`,
		`{"type":"message","seq":1,"time":2,"data":"x}`,
		`{"type":"batch","seq":1,"time":[],"data":[]}`,
		`{"type":"message","seq":99999999999999999999,"time":2,"data":"x"}`,
	} {
		if f, ok := decodeCanonical([]byte(bad)); ok {
			t.Errorf("decodeCanonical(%s) accepted: %+v", bad, f)
		}
	}
}

func TestCloseCodes(t *testing.T) {
	for _, code := range []string{CodeBadRequest, CodeUnauthorized, CodeNotFound, CodeReset, CodeDeleted, CodeInternal, CodeUnavailable} {
		c, ok := CloseCode(code)
		if !ok || c < 4000 || c > 4999 {
			t.Errorf("CloseCode(%q) = %d, %v", code, c, ok)
		}
		back, ok := ErrorCode(c)
		if !ok || back != code {
			t.Errorf("ErrorCode(%d) = %q, %v; want %q", c, back, ok, code)
		}
		if r := CloseReason(code); r == "" || len(r) > 123 {
			t.Errorf("CloseReason(%q) = %q: empty or longer than a close frame allows", code, r)
		}
	}
	if _, ok := CloseCode("nope"); ok {
		t.Error("CloseCode accepted an unknown code")
	}
	if r := CloseReason("nope"); r != "" {
		t.Errorf("CloseReason of an unknown code = %q", r)
	}
	if _, ok := ErrorCode(1000); ok {
		t.Error("ErrorCode accepted 1000")
	}
}

func TestEncodeDecode(t *testing.T) {
	hello := Frame{Type: FrameHello, Channel: "c\"1", Epoch: "3", From: 2, LastSeq: 40, PersistedSeq: 32, Open: true}
	reset := Frame{Type: FrameError, Code: CodeReset, Message: "reset <&>", Epoch: "4", LastSeq: 7}
	plain := Frame{Type: FrameError, Code: CodeNotFound, Message: "channel \"x\" not found"}
	for _, tc := range []struct {
		b    []byte
		want Frame
	}{
		{AppendHello(nil, hello), hello},
		{AppendError(nil, reset), reset},
		{AppendError(nil, plain), plain},
		{AppendSeq(nil, FrameLive, 40), Frame{Type: FrameLive, Seq: 40}},
		{AppendSeq(nil, FrameEnd, 0), Frame{Type: FrameEnd}},
	} {
		got, err := DecodeFrame(tc.b)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeFrame(%s) = %+v, %v; want %+v", tc.b, got, err, tc.want)
		}
	}
	// An error message that is not valid UTF-8 still makes valid JSON.
	b := AppendError(nil, Frame{Code: CodeInternal, Message: "bad \xff byte"})
	if f, err := DecodeFrame(b); err != nil || !strings.Contains(f.Message, "bad") {
		t.Errorf("DecodeFrame(%q) = %+v, %v", b, f, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, bad := range []string{
		``, `[]`, `{"type":"nope"}`, `{"type":"live"}`, `{"type":"end","seq":-1}`,
		`{"type":"message","seq":0,"time":1,"data":"x"}`,
		`{"type":"message","seq":1,"time":"x","data":"x"}`,
		`{"type":"batch","seq":1,"time":[1,2],"data":["x"]}`,
		`{"type":"batch","seq":1,"time":[],"data":[]}`,
	} {
		if f, err := DecodeFrame([]byte(bad)); err == nil {
			t.Errorf("DecodeFrame(%s) = %+v, want an error", bad, f)
		}
	}
}

// FuzzBinaryRoundTrip checks that any bytes of a binary channel survive
// the base64 frames, single and batched, on both decoder paths.
func FuzzBinaryRoundTrip(f *testing.F) {
	f.Add([]byte{0, 1, 0xff, '\n', '"'}, int64(1))
	f.Add([]byte{}, int64(7))
	f.Fuzz(func(t *testing.T, data []byte, seq int64) {
		if seq < 1 || seq > 1<<62 {
			seq = 1
		}
		m := NewBinaryMessage(seq, 123, data)
		for _, dec := range []func([]byte) (Frame, error){DecodeFrame, decodeGeneral} {
			fr, err := dec(m.Encoded())
			if err != nil || fr.Seq != seq || fr.Data[0] != string(data) || fr.Encoding != EncodingBase64 {
				t.Fatalf("decode %s: %+v %v", m.Encoded(), fr, err)
			}
			m2 := NewBinaryMessage(seq+1, 124, append([]byte{0x80}, data...))
			bf, err := dec(AppendMessages(nil, []*Message{m, m2}))
			if err != nil || len(bf.Data) != 2 || bf.Data[0] != string(data) || bf.Data[1] != "\x80"+string(data) {
				t.Fatalf("batch round trip: %+v %v", bf, err)
			}
		}
	})
}

func TestBinaryFrames(t *testing.T) {
	m := NewBinaryMessage(3, 9, []byte{0, 0xfe, 'A'})
	if want := `{"type":"message","seq":3,"time":9,"encoding":"base64","data":"AP5B"}`; string(m.Encoded()) != want {
		t.Fatalf("message frame %s, want %s", m.Encoded(), want)
	}
	batch := AppendMessages(nil, []*Message{m, NewBinaryMessage(4, 10, []byte("hi"))})
	if want := `{"type":"batch","seq":3,"time":[9,10],"encoding":"base64","data":["AP5B","aGk="]}`; string(batch) != want {
		t.Fatalf("batch frame %s, want %s", batch, want)
	}
	hello := AppendHello(nil, Frame{Channel: "c", Epoch: "1", Open: true, ContentType: "image/png"})
	f, err := DecodeFrame(hello)
	if err != nil || f.ContentType != "image/png" || !strings.Contains(string(hello), `"content_type":"image/png"`) {
		t.Fatalf("hello %s: %+v %v", hello, f, err)
	}
	for _, bad := range []string{
		`{"type":"message","seq":1,"time":1,"encoding":"base64","data":"!!"}`,
		`{"type":"message","seq":1,"time":1,"encoding":"rot13","data":"a"}`,
	} {
		if _, err := DecodeFrame([]byte(bad)); err == nil {
			t.Errorf("DecodeFrame(%s) accepted", bad)
		}
	}
}
