//go:build unix

package stack

import (
	"os"
	"syscall"
)

// childProcAttr puts a service child in a process group of its own, so a
// Ctrl-C in devstack's terminal reaches only devstack, which then stops
// each child in order (SIGTERM, then the grace period).
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killed reports whether the process ended by SIGKILL (the grace period ran out).
func killed(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
