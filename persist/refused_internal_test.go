package persist

import (
	"errors"
	"testing"
)

// TestRefusedStoredBeforeTakeOver: a batch refused by the epoch fence is
// reported stored only when the next epoch started at or past its last
// seq (an earlier attempt committed it), and never for a close.
func TestRefusedStoredBeforeTakeOver(t *testing.T) {
	for _, tc := range []struct {
		name   string
		u      channelUpdate
		st     channelState
		stored bool
	}{
		{"committed before the take-over", channelUpdate{id: "c", last: 10, epoch: 2}, channelState{last: 10, epoch: 3, next: 10}, true},
		{"the take-over started past it", channelUpdate{id: "c", last: 10, epoch: 2}, channelState{last: 12, epoch: 3, next: 12}, true},
		{"not committed", channelUpdate{id: "c", last: 10, epoch: 2}, channelState{last: 5, epoch: 3, next: 5}, false},
		{"next epoch unknown", channelUpdate{id: "c", last: 10, epoch: 2}, channelState{last: 10, epoch: 3, next: -1}, false},
		{"a close", channelUpdate{id: "c", last: 10, epoch: 2, close: true}, channelState{last: 10, epoch: 3, next: 10}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refused([]channelUpdate{tc.u}, map[string]channelState{"c": tc.st})
			ce, ok := errors.AsType[*ChannelError](err)
			if !ok {
				t.Fatalf("refused: %v, want a *ChannelError", err)
			}
			got := ce.Channels["c"]
			if stored := errors.Is(got, errStored); stored != tc.stored {
				t.Fatalf("refused: %v, want stored=%v", got, tc.stored)
			}
			if !tc.stored && !errors.Is(got, ErrFenced) {
				t.Fatalf("refused: %v, want %v", got, ErrFenced)
			}
		})
	}
}
