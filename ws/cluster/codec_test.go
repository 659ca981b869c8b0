package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/durable"
)

// TestErrorsCrossNodes: the hub errors a forwarded call can end with reach
// the asking node as the same errors, with what they carry.
func TestErrorsCrossNodes(t *testing.T) {
	for _, err := range []error{
		ws.ErrNotFound, ws.ErrChannelClosed, ws.ErrChannelDeleted, ws.ErrGeneratorChannel,
		ws.ErrOverloaded, &ws.MovedError{Owner: "n2"}, &ws.BadRequestError{Msg: "bad"},
		&ws.PersistWaitError{Seq: 7, After: 30 * time.Second},
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
	if got := errorReply(ws.ErrShuttingDown).Error.err(0); !errors.Is(got, ws.ErrMoved) {
		t.Errorf("a node shutting down: %v, want a move to an owner not known yet", got)
	}
	if m, ok := errors.AsType[*ws.MovedError](errorReply(&ws.MovedError{Owner: "n2"}).Error.err(0)); !ok || m.Owner != "n2" {
		t.Errorf("a move lost its owner: %v", m)
	}
}

// TestEventRoundTrip: an event decodes as it was encoded.
func TestEventRoundTrip(t *testing.T) {
	ev := ws.Event{Kind: ws.EventMessage, Channel: "c", Epoch: 3, Seq: 1 << 40, Time: -5, Data: []byte("x\ny")}
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
