//go:build linux || darwin

package h1transport

import (
	"errors"
	"net"
	"syscall"
)

// quiet reports whether nothing is waiting to be read on nc's socket, not
// even an end of stream: a non-blocking MSG_PEEK, which leaves any bytes
// where they are. For a TLS connection it looks at the TCP socket below:
// an idle TLS connection has no business receiving records either (a
// close_notify, or data, both end its use).
func quiet(nc net.Conn) bool {
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true // not a socket (tests' pipes): nothing to ask
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var (
		b     [1]byte
		empty bool
	)
	err = rc.Read(func(fd uintptr) bool {
		_, _, perr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		empty = errors.Is(perr, syscall.EAGAIN)
		return true // never wait for readability: this is a poll
	})
	return err == nil && empty
}
