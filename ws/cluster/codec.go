package cluster

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// Subjects. Channel ids may hold '.', NATS's token separator, and
// wildcard-free ids still could make empty tokens ("a..b"): a channel's
// subject carries its id in hex.
func rpcSubject(prefix, node string) string { return prefix + ".node." + node }
func historySubject(prefix string) string   { return prefix + ".history" }
func eventSubject(prefix, id string) string {
	return prefix + ".channel." + hex.EncodeToString([]byte(id))
}

// encodeEvent encodes ev, less its channel (the subject names it): kind,
// epoch, seq and time as varints, then the data.
func encodeEvent(ev hub.Event) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(ev.Data))
	b = append(b, byte(ev.Kind))
	b = binary.AppendUvarint(b, uint64(ev.Epoch))
	b = binary.AppendUvarint(b, uint64(ev.Seq))
	b = binary.AppendVarint(b, ev.Time)
	return append(b, ev.Data...)
}

// Flags of an encoded event's kind byte for a message larger than NATS
// carries (one near the largest allowed): it is published in parts, each
// at most the payload limit, on the channel's subject, where NATS keeps
// them in order. Every part but the last has more set, every part but the
// first has cont set, and a part's data starts with its offset in the
// message (a uvarint).
const (
	more     = 0x80
	cont     = 0x40
	flagBits = more | cont
)

// partOverhead bounds an encoded part's bytes besides its data.
const partOverhead = 1 + 4*binary.MaxVarintLen64

// encodeEvents encodes ev as one NATS payload, or, if that would pass
// limit bytes, as several parts, each at most limit, to be published in
// order.
func encodeEvents(ev hub.Event, limit int) [][]byte {
	room := limit - partOverhead
	if ev.Kind != hub.EventMessage || len(ev.Data) <= room || room <= 0 {
		return [][]byte{encodeEvent(ev)}
	}
	var parts [][]byte
	for off := 0; off < len(ev.Data); off += room {
		part := ev
		part.Data = nil
		b := encodeEvent(part)
		if off > 0 {
			b[0] |= cont
		}
		if off+room < len(ev.Data) {
			b[0] |= more
		}
		b = binary.AppendUvarint(b, uint64(off))
		parts = append(parts, append(b, ev.Data[off:min(off+room, len(ev.Data))]...))
	}
	return parts
}

// assembler puts the parts of messages back together, for one
// subscription (NATS calls its handler in order, one message at a time).
// A part missing drops its message, which the follower then sees as a
// missing seq, and resyncs.
type assembler struct {
	id      string
	pending hub.Event // the parts so far, while pending.Kind != 0
}

// add decodes b, a part or a whole event; ok is set when an event is
// complete.
func (a *assembler) add(b []byte) (ev hub.Event, ok bool, err error) {
	if len(b) == 0 || b[0]&flagBits == 0 {
		a.pending = hub.Event{} // the rest of a pending message was lost
		ev, err = decodeEvent(a.id, b)
		return ev, err == nil, err
	}
	flags := b[0] & flagBits
	ev, err = decodeEvent(a.id, append([]byte{b[0] &^ flagBits}, b[1:]...))
	var off uint64
	n := 0
	if err == nil {
		off, n = binary.Uvarint(ev.Data)
	}
	if err != nil || n <= 0 || ev.Kind != hub.EventMessage {
		a.pending = hub.Event{}
		return hub.Event{}, false, errBadEvent
	}
	ev.Data = ev.Data[n:]
	p := a.pending
	switch {
	case flags&cont == 0 && off == 0:
		p = ev // a first part
	case p.Kind != 0 && p.Seq == ev.Seq && p.Epoch == ev.Epoch && off == uint64(len(p.Data)):
		p.Data = append(p.Data, ev.Data...)
	default:
		a.pending = hub.Event{} // a part is missing
		return hub.Event{}, false, nil
	}
	if flags&more != 0 {
		a.pending = p
		return hub.Event{}, false, nil
	}
	a.pending = hub.Event{}
	return p, true, nil
}

// errBadEvent is the error of decodeEvent for bytes it did not encode.
var errBadEvent = errors.New("cluster: malformed event")

// decodeEvent decodes what encodeEvent encoded, for channel id. The data
// is copied: b belongs to NATS.
func decodeEvent(id string, b []byte) (hub.Event, error) {
	if len(b) < 1 {
		return hub.Event{}, errBadEvent
	}
	ev := hub.Event{Kind: hub.EventKind(b[0]), Channel: id}
	b = b[1:]
	var fields [2]uint64
	for i := range fields {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return hub.Event{}, errBadEvent
		}
		fields[i], b = v, b[n:]
	}
	t, n := binary.Varint(b)
	if n <= 0 {
		return hub.Event{}, errBadEvent
	}
	ev.Epoch, ev.Seq, ev.Time = int64(fields[0]), int64(fields[1]), t
	if ev.Kind == hub.EventMessage {
		ev.Data = append([]byte{}, b[n:]...)
	}
	return ev, nil
}

// Remote procedures a node serves on its rpc subject.
const (
	opAppend   = "append"
	opClose    = "close"
	opDelete   = "delete"
	opSnapshot = "snapshot"
	opPing     = "ping"
	opStream   = "stream_append"
)

// request is a remote call. Its fields travel JSON-encoded in the
// callHeader header of a NATS message, its data raw in the body: data
// is never inflated (no base64), so an append as large as NATS's payload
// less the header can be forwarded.
type request struct {
	Op      string `json:"op"`
	Channel string `json:"channel"`
	Data    []byte `json:"-"` // the body of opAppend
	Wait    bool   `json:"wait,omitempty"`
	// Stream is the Durable Streams append of opStream.
	Stream *streamRequest `json:"stream,omitempty"`
}

// callHeader is the NATS header that carries a request's fields.
const callHeader = "Messages-Call"

// requestMsg returns the NATS message of req, sent to subject.
func requestMsg(subject string, req request) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Header.Set(callHeader, string(marshal(req)))
	msg.Data = req.Data
	if req.Stream != nil {
		msg.Data = frameMessages(req.Stream.Messages)
	}
	return msg
}

// decodeRequest decodes what requestMsg encoded. The data is the
// message's: NATS hands each message its own buffer.
func decodeRequest(msg *nats.Msg) (request, error) {
	var req request
	if err := json.Unmarshal([]byte(msg.Header.Get(callHeader)), &req); err != nil {
		return request{}, err
	}
	if req.Stream == nil {
		req.Data = msg.Data
		return req, nil
	}
	msgs, err := unframeMessages(msg.Data)
	req.Stream.Messages = msgs
	return req, err
}

// frameMessages encodes msgs as one body: each message's length (a
// uvarint), then its bytes.
func frameMessages(msgs [][]byte) []byte {
	n := 0
	for _, m := range msgs {
		n += binary.MaxVarintLen64 + len(m)
	}
	b := make([]byte, 0, n)
	for _, m := range msgs {
		b = binary.AppendUvarint(b, uint64(len(m)))
		b = append(b, m...)
	}
	return b
}

// unframeMessages decodes what frameMessages encoded.
func unframeMessages(b []byte) ([][]byte, error) {
	var msgs [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("cluster: malformed messages")
		}
		msgs = append(msgs, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return msgs, nil
}

// streamRequest is what a Durable Streams append adds to a request.
type streamRequest struct {
	Messages  [][]byte          `json:"-"` // in the body
	Close     bool              `json:"close,omitempty"`
	StreamSeq string            `json:"stream_seq,omitempty"`
	Producer  *durable.Producer `json:"producer,omitempty"`
}

// reply is the answer to a request, JSON-encoded.
type reply struct {
	Seq       int64         `json:"seq,omitempty"`
	Epoch     int64         `json:"epoch,omitempty"`
	Persisted int64         `json:"persisted,omitempty"`
	Messages  []wireMessage `json:"messages,omitempty"`
	Error     *replyError   `json:"error,omitempty"`
	// The answer to a Durable Streams append: the tail is Epoch, Last.
	Last        int64 `json:"last,omitempty"`
	Closed      bool  `json:"closed,omitempty"`
	Duplicate   bool  `json:"duplicate,omitempty"`
	ProducerSeq int64 `json:"producer_seq,omitempty"`
}

// wireMessage is a buffered message of a snapshot.
type wireMessage struct {
	Seq  int64  `json:"seq"`
	Time int64  `json:"time"`
	Data []byte `json:"data"`
}

// replyError is a failed request: a code the asking node maps back to the
// hub's error, and the message for people.
type replyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Owner   string `json:"owner,omitempty"` // code moved: the owner, if known
	// After is the owner's persist-wait timeout, for code persist_wait.
	After time.Duration `json:"after,omitempty"`
	// Current, Expected and Received detail a refused producer request.
	Current  int64 `json:"current,omitempty"`
	Expected int64 `json:"expected,omitempty"`
	Received int64 `json:"received,omitempty"`
}

// Error codes of replyError.
const (
	// The codes the WebSocket protocol also has are its own.
	codeNotFound   = wire.CodeNotFound
	codeDeleted    = wire.CodeDeleted
	codeBadRequest = wire.CodeBadRequest
	codeInternal   = wire.CodeInternal

	codeClosed       = "closed"
	codeGenerator    = "generator"
	codeOverloaded   = "overloaded"
	codeShuttingDown = "shutting_down"
	codeMoved        = "moved"
	codeStore        = "store"
	codePersistWait  = "persist_wait"
	// Durable Streams errors of a stream append.
	codeStreamNotFound = "stream_not_found"
	codeStreamClosed   = "stream_closed"
	codeStreamSeq      = "stream_seq"
	codeStaleEpoch     = "stale_epoch"
	codeSeqGap         = "seq_gap"
	codeNewEpochSeq    = "new_epoch_seq"
	codePersistTimeout = "persist_timeout"
	codeConflict       = "conflict"
	codeStreamBad      = "stream_bad_request"
)

// sentinels are the sentinel errors that cross nodes as a code alone, in
// both directions: errorReply encodes them, replyError.err decodes them.
// Read-only.
var sentinels = [...]struct {
	code string
	err  error
}{
	// The Durable Streams errors first: they say more than the hub's.
	{codeStreamNotFound, durable.ErrNotFound},
	{codeStreamClosed, durable.ErrClosed},
	{codeStreamSeq, durable.ErrStreamSeq},
	{codeNewEpochSeq, durable.ErrNewEpochSeq},
	{codeNotFound, hub.ErrNotFound},
	{codeClosed, hub.ErrChannelClosed},
	{codeDeleted, hub.ErrChannelDeleted},
	{codeGenerator, hub.ErrGeneratorChannel},
	{codeOverloaded, hub.ErrOverloaded},
}

// sentinelCode returns the code of the first of sentinels err wraps.
func sentinelCode(err error) (string, bool) {
	for _, sc := range sentinels {
		if errors.Is(err, sc.err) {
			return sc.code, true
		}
	}
	return "", false
}

// errorReply returns the reply of a request that failed with err, a hub
// error.
func errorReply(err error) reply {
	re := &replyError{Code: codeInternal, Message: err.Error()}
	moved, isMoved := errors.AsType[*hub.MovedError](err)
	code, isSentinel := sentinelCode(err)
	switch {
	case isSentinel:
		re.Code = code
	case errors.Is(err, hub.ErrShuttingDown):
		re.Code = codeShuttingDown
	case isMoved:
		re.Code, re.Owner = codeMoved, moved.Owner
	case errors.Is(err, hub.ErrMoved):
		re.Code = codeMoved
	}
	if _, ok := errors.AsType[*hub.StoreError](err); ok {
		re.Code = codeStore
	}
	if _, ok := errors.AsType[*hub.BadRequestError](err); ok {
		re.Code = codeBadRequest
	}
	if pw, ok := errors.AsType[*hub.PersistWaitError](err); ok {
		re.Code, re.After = codePersistWait, pw.After
	}
	streamError(re, err)
	return reply{Error: re}
}

// streamError sets the code of re for err, a Durable Streams error, if it
// is one.
func streamError(re *replyError, err error) {
	stale, isStale := errors.AsType[*durable.StaleEpochError](err)
	gap, isGap := errors.AsType[*durable.SeqGapError](err)
	switch {
	case errors.Is(err, durable.ErrPersistTimeout):
		re.Code = codePersistTimeout
	case isStale:
		re.Code, re.Current = codeStaleEpoch, stale.Current
	case isGap:
		re.Code, re.Expected, re.Received = codeSeqGap, gap.Expected, gap.Received
	}
	if _, ok := errors.AsType[*durable.ConflictError](err); ok {
		re.Code = codeConflict
	}
	if _, ok := errors.AsType[*durable.BadRequestError](err); ok {
		re.Code = codeStreamBad
	}
}

// err returns the hub error that e reports, for the append of seq seq if
// it was accepted. A node shutting down is, for the asking node, a node
// about to hand its channels over: a move to an owner not yet known.
func (e *replyError) err(seq int64) error {
	for _, sc := range sentinels {
		if sc.code == e.Code {
			return sc.err
		}
	}
	switch e.Code {
	case codePersistWait:
		return &hub.PersistWaitError{Seq: seq, After: e.After}
	case codeShuttingDown:
		return &hub.MovedError{}
	case codeMoved:
		return &hub.MovedError{Owner: e.Owner}
	case codeStore:
		return &hub.StoreError{Err: errors.New(e.Message)}
	case codeBadRequest:
		return &hub.BadRequestError{Msg: e.Message}
	case codePersistTimeout:
		return fmt.Errorf("%w: %s", durable.ErrPersistTimeout, e.Message)
	case codeStaleEpoch:
		return &durable.StaleEpochError{Current: e.Current}
	case codeSeqGap:
		return &durable.SeqGapError{Expected: e.Expected, Received: e.Received}
	case codeConflict:
		return &durable.ConflictError{Msg: e.Message}
	case codeStreamBad:
		return &durable.BadRequestError{Msg: e.Message}
	}
	return fmt.Errorf("cluster: the owner failed: %s", e.Message)
}

// snapshotReply encodes a snapshot.
func snapshotReply(s hub.Snapshot) reply {
	r := reply{Epoch: s.Epoch, Persisted: s.Persisted, Seq: s.LastSeq, Messages: make([]wireMessage, len(s.Messages))}
	for i, m := range s.Messages {
		r.Messages[i] = wireMessage{Seq: m.Seq, Time: m.Time, Data: m.Data}
	}
	return r
}

// snapshot decodes a snapshot reply.
func (r reply) snapshot() hub.Snapshot {
	s := hub.Snapshot{Epoch: r.Epoch, Persisted: r.Persisted, LastSeq: r.Seq, Messages: make([]*wire.Message, len(r.Messages))}
	for i, m := range r.Messages {
		s.Messages[i] = wire.NewMessage(m.Seq, m.Time, m.Data)
	}
	return s
}

// marshal encodes v, which cannot fail to encode.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
