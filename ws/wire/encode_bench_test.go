package wire

import (
	"fmt"
	"strconv"
	"testing"
)

// BenchmarkEncodeRun encodes a page of 1000 stored lines as one catch-up
// frame, as the page cache does, with AppendRun (which checks that the data
// is UTF-8 as it escapes it) and with the encoder as it was before that
// check (baselineAppendRun), on ASCII lines and on lines of accented and
// CJK text, so that a run can report the ratio of the two.
func BenchmarkEncodeRun(b *testing.B) {
	for _, text := range []string{"abcdefghij", "éèà 日本語 ok"} {
		rows := make([][]byte, 1000)
		size := 0
		for i := range rows {
			rows[i] = fmt.Appendf(nil, "%d: %s\n", i+1, text)
			size += len(rows[i])
		}
		at := func(i int) (int64, []byte) { return 1764300000123456, rows[i] }
		kind := "ascii"
		if text[0] >= 0x80 {
			kind = "utf8"
		}
		for _, enc := range []struct {
			name string
			f    func([]byte, int64, int, func(int) (int64, []byte)) []byte
		}{{"baseline", baselineAppendRun}, {"checked", AppendRun}} {
			b.Run(kind+"/"+enc.name, func(b *testing.B) {
				b.SetBytes(int64(size))
				buf := make([]byte, 0, 64<<10)
				for b.Loop() {
					buf = enc.f(buf[:0], 1, len(rows), at)
				}
			})
		}
	}
}

// baselineAppendRun and baselineJSONString are AppendRun and
// AppendJSONString before they checked UTF-8, kept as the benchmark's
// baseline.
func baselineAppendRun(b []byte, seq int64, n int, at func(i int) (t int64, data []byte)) []byte {
	if n == 1 {
		t, d := at(0)
		b = append(b, `{"type":"message","seq":`...)
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, t, 10)
		b = append(b, `,"data":`...)
		b = baselineJSONString(b, d)
		return append(b, '}')
	}
	b = append(b, `{"type":"batch","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"time":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		t, _ := at(i)
		b = strconv.AppendInt(b, t, 10)
	}
	b = append(b, `],"data":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		_, d := at(i)
		b = baselineJSONString(b, d)
	}
	return append(b, "]}"...)
}
func baselineJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && s[i+2]&^1 == 0xA8 {
				// U+2028 and U+2029 are escaped, as encoding/json does.
				b = append(b, s[start:i]...)
				b = append(b, `\u202`...)
				b = append(b, hexDigits[s[i+2]&0xF])
				i += 2
				start = i + 1
			}
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
