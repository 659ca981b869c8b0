package wire

import (
	"fmt"
	"testing"
)

// BenchmarkDecodeBatch decodes a catch-up batch frame of 1000 short lines,
// each ending in a newline (an escape), as clients read history.
func BenchmarkDecodeBatch(b *testing.B) {
	msgs := make([]*Message, 1000)
	for i := range msgs {
		msgs[i] = NewMessage(int64(i+1), 1764300000123456, []byte(fmt.Sprintf("%d abcdefghij\n", i+1)))
	}
	frame := AppendMessages(nil, msgs)
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := DecodeFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}
