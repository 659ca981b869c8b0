package ws

// What an idle WebSocket costs: the accepted connection gets small
// buffers, and its reader lets go of the library between frames.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
)

// Buffer sizes of an accepted WebSocket. Clients send only control frames,
// so the read buffer can be tiny. The write buffer holds a control frame
// (at most 127 bytes: pings, pongs, the close handshake), which then goes
// out in one write; the stream's frames are gathered whole by the
// corkConn under it and written with one writev whatever their size.
const (
	readBufferSize  = 64
	writeBufferSize = 128
)

// smallBuffers hands the WebSocket library a hijacked connection with small
// bufio buffers instead of net/http's 4 KiB ones: with many idle
// subscribers, buffers are most of what a connection costs.
type smallBuffers struct {
	http.ResponseWriter
	conn net.Conn    // the hijacked connection, as a *corkConn
	idle *idleReader // what the library reads through; nil if it reads conn itself
}

// Hijack implements http.Hijacker. Bytes the client sent right after its
// request (a frame pipelined with the handshake) are already in net/http's
// reader; they are moved into the buffer of the small reader handed over,
// because the library takes what its reader has buffered and then reads the
// connection itself: bytes hidden behind another io.Reader would be lost.
func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("ws: the response cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.idle = &idleReader{rc: rc}
		}
	}
	cc := &corkConn{Conn: conn, idle: w.idle}
	w.conn = cc
	var br *bufio.Reader
	if n := brw.Reader.Buffered(); n == 0 {
		br = bufio.NewReaderSize(cc, readBufferSize)
	} else {
		early, _ := brw.Reader.Peek(n)
		w.idle.readEarly(early)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), cc), max(n, readBufferSize))
		// Fill br's buffer from the early bytes alone: the first read of
		// the MultiReader returns all of them and none of conn's.
		if _, err := br.Peek(n); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	return cc, bufio.NewReadWriter(br, bufio.NewWriterSize(cc, writeBufferSize)), nil
}

// Unwrap returns the wrapped ResponseWriter, for http.ResponseController.
func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// errIdle is what an idleReader returns to the library when the
// connection's reader may let go: the last frame is read whole and no byte
// of the next has come.
var errIdle = errors.New("ws: no frame to read")

// idleReader is what the WebSocket library reads an accepted connection
// through. A goroutine blocked in the library's Reader sits deep in its
// frame parser and keeps a 4 KiB stack; ten thousand idle subscribers
// kept 40 MB of stacks that way. So the connection's reader waits for
// bytes shallowly (wait, a peek on the socket, whose stack shrinks to the
// 2 KiB minimum), then calls Reader, which reads through idleReader; once
// Reader has read every frame that came, and wants the next one with
// nothing on the socket, idleReader returns errIdle, which the library
// passes up without closing anything, and the reader waits again.
//
// idleReader follows the frames it returns (the library reads exactly
// them, and asks for more only once it has used up what it has), so it
// says errIdle only between two frames, never inside one; and only to
// the connection's reader, between allowIdle and the errIdle: a close
// handshake reads the client's answer through it as a plain read.
//
// The library serialises its reads: the frame state below is used by one
// reader at a time. The zero value is not usable; a nil *idleReader is
// (its methods do nothing).
type idleReader struct {
	rc syscall.RawConn

	may    atomic.Bool // the connection's reader may be told errIdle
	closed atomic.Bool // the connection is closing: never errIdle again

	// Guarded by the library's read lock.
	head [14]byte // the header of the frame being read, so far
	hn   int      // bytes in head
	need int64    // payload bytes of the frame still to come
	peek [1]byte

	early bool // bytes came with the handshake: the first wait returns at once
}

// readEarly follows the frames in b, the bytes the client sent right
// after its handshake, which the library reads before the connection; the
// reader's first wait then returns at once, for it to read them. Does
// nothing on a nil *idleReader.
func (r *idleReader) readEarly(b []byte) {
	if r == nil {
		return
	}
	r.track(b)
	r.early = true
}

// wait blocks until the connection has bytes to read, or has ended; or
// returns at once the first time if bytes came with the handshake.
func (r *idleReader) wait() error {
	if r.early {
		r.early = false
		return nil
	}
	return r.rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), r.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}

// allowIdle lets the next read that finds nothing between two frames
// return errIdle, unless the connection is closing.
func (r *idleReader) allowIdle() {
	r.may.Store(true)
	if r.closed.Load() {
		r.may.Store(false)
	}
}

// closing makes every later read a plain one: the close handshake reads
// the client's answer. Called before the server closes the connection.
func (r *idleReader) closing() {
	if r == nil {
		return
	}
	r.closed.Store(true)
	r.may.Store(false)
}

// Read implements io.Reader.
func (r *idleReader) Read(p []byte) (int, error) {
	var n int
	var err error
	idle := false
	between := r.hn == 0 && r.need == 0
	rerr := r.rc.Read(func(fd uintptr) bool {
		n, err = syscall.Read(int(fd), p)
		switch {
		case err == syscall.EINTR:
			return false
		case err == syscall.EAGAIN && between && r.may.Load():
			idle = true
		case err == syscall.EAGAIN:
			return false // wait for bytes
		}
		return true
	})
	switch {
	case rerr != nil:
		return 0, rerr
	case idle:
		r.may.Store(false)
		return 0, errIdle
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	r.track(p[:n])
	return n, nil
}

// track follows the frames in b, the bytes just read (RFC 6455 section
// 5.2: two bytes, an extended length of 2 or 8, a mask of 4, the payload).
func (r *idleReader) track(b []byte) {
	for len(b) > 0 {
		if r.need > 0 {
			k := min(int64(len(b)), r.need)
			r.need -= k
			b = b[k:]
			continue
		}
		r.head[r.hn] = b[0]
		r.hn++
		b = b[1:]
		if r.hn < 2 {
			continue
		}
		size, length := 2, int64(r.head[1]&0x7f)
		switch length {
		case 126:
			size += 2
		case 127:
			size += 8
		}
		if r.head[1]&0x80 != 0 {
			size += 4
		}
		if r.hn < size {
			continue
		}
		switch length {
		case 126:
			length = int64(binary.BigEndian.Uint16(r.head[2:]))
		case 127:
			length = int64(binary.BigEndian.Uint64(r.head[2:]) &^ (1 << 63))
		}
		r.hn, r.need = 0, length
	}
}
