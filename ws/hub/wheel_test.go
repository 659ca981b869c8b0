package hub

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/messages-server/messages/persist"
)

// TestWheelRunsManyGenerators: generators of many frequencies share the
// hub's wheel; each appends exactly its lines, in order, none before it is
// due (those faster than the wheel's slot several per wake-up), and
// closes its channel after the last one.
func TestWheelRunsManyGenerators(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st, _ := newTestHub(t, Config{MaxGeneratorRate: 1e6})
		ctx := context.Background()
		freqs := []float64{3, 20, 50, 333, 1000, 5000}
		const perFreq, lines = 20, 60
		id := func(f float64, i int) string { return fmt.Sprintf("g%v-%d", f, i) }
		for _, f := range freqs {
			for i := range perFreq {
				if _, err := h.Create(ctx, id(f, i), &persist.Generator{Freq: f, Max: lines}, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Line k is due (k-1)/f after the start: at 50ms, floor(0.05 f)+1
		// lines are in.
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		for _, f := range freqs {
			period := time.Duration(float64(time.Second) / f)
			want := min(int64(50*time.Millisecond/period)+1, lines)
			for i := range perFreq {
				info, err := h.Info(ctx, id(f, i))
				if err != nil || info.LastSeq != want {
					t.Fatalf("%s at 50ms: %+v, %v; want %d lines", id(f, i), info, err, want)
				}
			}
		}
		time.Sleep(time.Duration(float64(lines) / 3 * float64(time.Second)))
		synctest.Wait()
		for _, f := range freqs {
			for i := range perFreq {
				ch := id(f, i)
				info, err := h.Info(ctx, ch)
				if err != nil || info.Open || info.LastSeq != lines {
					t.Fatalf("%s at the end: %+v, %v; want %d lines, closed", ch, info, err, lines)
				}
				msgs, err := st.Messages(ctx, ch, 0, 2*lines)
				if err != nil || len(msgs) != lines {
					t.Fatalf("%s: %d stored lines, %v; want %d", ch, len(msgs), err, lines)
				}
				for k, m := range msgs {
					if m.Seq != int64(k+1) || string(m.Data) != string(generatorLine(int64(k+1), ch)) {
						t.Fatalf("%s: stored line %d is seq %d %q", ch, k+1, m.Seq, m.Data)
					}
				}
			}
		}
	})
}
