//go:build !unix

package stack

import (
	"os"
	"syscall"
)

// childProcAttr: no process groups to separate outside Unix.
func childProcAttr() *syscall.SysProcAttr { return nil }

// killed: without Unix signals, a stop that needed Kill is not told apart.
func killed(*os.ProcessState) bool { return false }
