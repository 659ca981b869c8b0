package ws

import (
	"math"
	"net"
	"sync"
)

// corkConn is the connection under an accepted WebSocket. The WebSocket
// library writes a frame through a bufio.Writer: its header into the
// buffer, then the payload, which for anything larger than the buffer
// means a write(2) for the buffer and another for the rest. To write each
// frame the server sends with one syscall, wsSink announces the frame's
// size (gather) before handing it to the library; the pieces the library
// writes are then gathered, the small ones copied and the payload
// referenced, and written together with one writev(2) once the whole
// frame is in, within the library's write. Outside a gather (pongs, the
// close handshake) writes go straight through.
//
// All writes to a corkConn come from the library, serialised by its frame
// lock; gather and flush are called by the stream's goroutine around its
// own writes. A pong the reader goroutine writes in between is gathered
// with the frame, in order: the bytes on the wire are the same.
type corkConn struct {
	net.Conn
	idle *idleReader // what reads go through, if not nil (see idleReader)

	mu   sync.Mutex  // guards the fields below
	want int         // bytes of the frame still to come; 0: not gathering
	bufs net.Buffers // gathered pieces, in order; on arr unless more
	arr  [3][]byte   // room for the usual pieces: buffer, payload, rest
	copy *[]byte     // copies of the small pieces (the library reuses its buffer)
}

// smallPiece is the size up to which a gathered piece is copied rather
// than referenced: the library's own buffer (writeBufferSize) and control
// frame payloads, which it reuses once its write returns. Larger pieces
// are the payload passed to Conn.Write, which stays put until that
// returns.
const smallPiece = 256

// copyPool holds the buffers for the copied pieces, taken only while a
// frame is gathered.
var copyPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*smallPiece); return &b }}

// frameSize returns the size on the wire of an unmasked, uncompressed
// frame with a payload of n bytes (RFC 6455 section 5.2).
func frameSize(n int) int {
	switch {
	case n > math.MaxUint16:
		return 10 + n
	case n > 125:
		return 4 + n
	}
	return 2 + n
}

// Read reads through the idleReader, if any. The library reads the
// connection it was handed, once the bytes its bufio.Reader held are used
// up: a connection reader blocked there instead would sit in its frame
// parser again, on a deep stack, after the first frame the client sent.
func (c *corkConn) Read(p []byte) (int, error) {
	if c.idle != nil {
		return c.idle.Read(p)
	}
	return c.Conn.Read(p)
}

// gather starts gathering the n bytes of the next frame.
func (c *corkConn) gather(n int) {
	c.mu.Lock()
	c.want = n
	c.mu.Unlock()
}

// Write gathers p while a frame is announced, writing the whole frame once
// its last byte arrives; otherwise it writes p.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.want <= 0 {
		return c.Conn.Write(p)
	}
	if c.bufs == nil {
		c.bufs = c.arr[:0]
	}
	if len(p) <= smallPiece {
		if c.copy == nil {
			c.copy = copyPool.Get().(*[]byte)
		}
		b := *c.copy
		if cap(b)-len(b) < len(p) {
			// Pieces already gathered point into b: start a new one.
			b = make([]byte, 0, max(2*smallPiece, len(p)))
		}
		start := len(b)
		b = append(b, p...)
		*c.copy = b
		c.bufs = append(c.bufs, b[start:])
	} else {
		c.bufs = append(c.bufs, p)
	}
	c.want -= len(p)
	if c.want > 0 {
		return len(p), nil
	}
	c.want = 0
	if err := c.writeGathered(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush writes what is still gathered and stops gathering. It is a safety
// net: a frame whose size was announced right is written by its last
// Write, and flush finds nothing.
func (c *corkConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = 0
	return c.writeGathered()
}

// BuffersWriter is a connection that writes several buffers with one
// call, as net.TCPConn does (writev) through net.Buffers. A net.Conn that
// wraps another (to count, limit or trace what it writes) implements it to
// keep that; without it, net.Buffers writes a wrapped connection's buffers
// one by one.
type BuffersWriter interface {
	WriteBuffers(v *net.Buffers) (int64, error)
}

// writeGathered writes the gathered pieces with one writev and lets go of
// them. Called with mu held.
func (c *corkConn) writeGathered() error {
	var err error
	if len(c.bufs) > 0 {
		bufs := c.bufs // writing consumes it
		if bw, ok := c.Conn.(BuffersWriter); ok {
			_, err = bw.WriteBuffers(&bufs)
		} else {
			_, err = bufs.WriteTo(c.Conn)
		}
	}
	clear(c.bufs)
	clear(c.arr[:])
	c.bufs = c.arr[:0]
	if c.copy != nil {
		*c.copy = (*c.copy)[:0]
		copyPool.Put(c.copy)
		c.copy = nil
	}
	return err
}
