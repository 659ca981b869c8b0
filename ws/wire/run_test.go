package wire

import (
	"bytes"
	"testing"
)

// TestAppendRun: a run encoded from rows is byte for byte the frame built
// from Messages, for one message and for many, with data that needs
// escaping.
func TestAppendRun(t *testing.T) {
	data := []string{"1: a\n", "", `q"\`, "\u2028 é \x01", "plain"}
	for n := 1; n <= len(data); n++ {
		msgs := make([]*Message, n)
		for i := range n {
			msgs[i] = NewMessage(int64(41+i), int64(1000+i), []byte(data[i]))
		}
		want := AppendMessages(nil, msgs)
		got := AppendRun([]byte("x"), 41, n, func(i int) (int64, []byte) { return int64(1000 + i), []byte(data[i]) })
		if !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Errorf("n=%d:\n got %s\nwant %s", n, got, want)
		}
		f, err := DecodeFrame(got[1:])
		if err != nil || f.Seq != 41 || len(f.Data) != n || f.Data[n-1] != data[n-1] {
			t.Errorf("n=%d: decoded %+v, %v", n, f, err)
		}
	}
}
