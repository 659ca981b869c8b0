package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
)

// TestErrorsCrossNodes: the hub errors a forwarded call can end with reach
// the asking node as the same errors, with what they carry.
func TestErrorsCrossNodes(t *testing.T) {
	for _, err := range []error{
		hub.ErrNotFound, hub.ErrChannelClosed, hub.ErrChannelDeleted, hub.ErrGeneratorChannel,
		hub.ErrOverloaded, &hub.MovedError{Owner: "n2"}, &hub.BadRequestError{Msg: "bad"},
		&hub.PersistWaitError{Seq: 7, After: 30 * time.Second},
		durable.ErrNotFound, durable.ErrClosed, durable.ErrStreamSeq, durable.ErrNewEpochSeq,
		&durable.StaleEpochError{Current: 3}, &durable.SeqGapError{Expected: 2, Received: 5},
		&durable.ConflictError{Msg: "generator"}, &durable.BadRequestError{Msg: "bad"},
	} {
		r := errorReply(err)
		got := r.Error.err(7)
		if !errors.Is(got, err) && got.Error() != err.Error() {
			t.Errorf("%v crossed as %v", err, got)
		}
	}
	if got := errorReply(durable.ErrPersistTimeout).Error.err(7); !errors.Is(got, durable.ErrPersistTimeout) {
		t.Errorf("a stream persist timeout crossed as %v", got)
	}
	if got := errorReply(hub.ErrShuttingDown).Error.err(0); !errors.Is(got, hub.ErrMoved) {
		t.Errorf("a node shutting down: %v, want a move to an owner not known yet", got)
	}
	if m, ok := errors.AsType[*hub.MovedError](errorReply(&hub.MovedError{Owner: "n2"}).Error.err(0)); !ok || m.Owner != "n2" {
		t.Errorf("a move lost its owner: %v", m)
	}
}

// TestEventRoundTrip: an event decodes as it was encoded.
func TestEventRoundTrip(t *testing.T) {
	ev := hub.Event{Kind: hub.EventMessage, Channel: "c", Epoch: 3, Seq: 1 << 40, Time: -5, Data: []byte("x\ny")}
	got, err := decodeEvent("c", encodeEvent(ev))
	if err != nil || got.Kind != ev.Kind || got.Epoch != 3 || got.Seq != 1<<40 || got.Time != -5 || string(got.Data) != "x\ny" {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", ev, got, err)
	}
	for _, bad := range [][]byte{nil, {1}, {1, 0x80}} {
		if _, err := decodeEvent("c", bad); err == nil {
			t.Errorf("decodeEvent(%v) succeeded", bad)
		}
	}
}

// TestEventFragments: an event larger than the payload limit goes out in
// parts that are put back together in order; a lost part drops only its
// event, which the follower sees as a missing seq.
func TestEventFragments(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i)
	}
	big := hub.Event{Kind: hub.EventMessage, Channel: "c", Epoch: 3, Seq: 9, Time: 77, Data: data}
	parts := encodeEvents(big, 300)
	if len(parts) < 4 {
		t.Fatalf("%d parts of 1000 bytes at 300 a part, want at least 4", len(parts))
	}
	small := hub.Event{Kind: hub.EventMessage, Channel: "c", Epoch: 3, Seq: 10, Time: 78, Data: []byte("x")}
	for _, tc := range []struct {
		name string
		drop int // the index of a part lost, -1 for none
		want []int64
	}{{"whole", -1, []int64{9, 10}}, {"first part lost", 0, []int64{10}}, {"a middle part lost", 2, []int64{10}}} {
		a := &assembler{id: "c"}
		var got []hub.Event
		for i, b := range append(append([][]byte{}, parts...), encodeEvents(small, 300)...) {
			if i == tc.drop {
				continue
			}
			ev, ok, err := a.add(b)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if ok {
				got = append(got, ev)
			}
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d events, want %v", tc.name, len(got), tc.want)
		}
		for i, ev := range got {
			if ev.Seq != tc.want[i] {
				t.Fatalf("%s: event %d has seq %d, want %d", tc.name, i, ev.Seq, tc.want[i])
			}
			if ev.Seq == 9 && (string(ev.Data) != string(data) || ev.Time != 77 || ev.Epoch != 3) {
				t.Fatalf("%s: reassembled event %+v differs", tc.name, ev)
			}
		}
	}
}
