package wire

// Frame types sent by the server, one JSON object per WebSocket text message.
const (
	FrameHello   = "hello"
	FrameMessage = "message"
	FrameBatch   = "batch"
	FrameLive    = "live"
	FrameEnd     = "end"
	FrameError   = "error"
)

// Error codes carried by error frames, each followed by a close with the
// matching WebSocket status code (see CloseCode).
const (
	CodeBadRequest   = "bad_request"  // close 4400
	CodeUnauthorized = "unauthorized" // close 4401: the token expired; subscribe again with a fresh one
	CodeNotFound     = "not_found"    // close 4404
	CodeReset        = "reset"        // close 4409
	CodeDeleted      = "deleted"      // close 4410: the channel was deleted; do not resume
	CodeInternal     = "internal"     // close 4500
	CodeUnavailable  = "unavailable"  // close 4503: store unreachable or overloaded
)

// WebSocket close codes the server uses besides 1000 (end of channel) and
// 1001 (server going away: resume later). They are untyped so that they
// convert to any WebSocket library's status code type.
const (
	CloseBadRequest   = 4400
	CloseUnauthorized = 4401 // as HTTP 401
	CloseNotFound     = 4404
	CloseReset        = 4409
	CloseDeleted      = 4410 // as HTTP 410 Gone
	CloseInternal     = 4500
	CloseUnavailable  = 4503
)

// codes is the one table of the error codes: each with the close code
// and the close reason (short and fixed: the error frame has the details)
// that follow its error frame. Read-only.
var codes = [...]struct {
	code   string
	close  int
	reason string
}{
	{CodeBadRequest, CloseBadRequest, "bad request"},
	{CodeUnauthorized, CloseUnauthorized, "token expired"},
	{CodeNotFound, CloseNotFound, "channel not found"},
	{CodeReset, CloseReset, "epoch reset"},
	{CodeDeleted, CloseDeleted, "channel deleted"},
	{CodeInternal, CloseInternal, "internal server error"},
	{CodeUnavailable, CloseUnavailable, "storage unavailable, retry later"},
}

// CloseCode returns the WebSocket close code that follows an error frame
// with the given error code, and false for an unknown code.
func CloseCode(code string) (int, bool) {
	for _, c := range codes {
		if c.code == code {
			return c.close, true
		}
	}
	return 0, false
}

// CloseReason returns the reason sent with the close that follows an
// error frame with the given error code, and "" for an unknown code.
func CloseReason(code string) string {
	for _, c := range codes {
		if c.code == code {
			return c.reason
		}
	}
	return ""
}

// ErrorCode returns the error code a WebSocket close code stands for, and
// false for a close code that is not one of the server's.
func ErrorCode(close int) (string, bool) {
	for _, c := range codes {
		if c.close == close {
			return c.code, true
		}
	}
	return "", false
}
