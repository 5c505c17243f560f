package main

import "syscall"

// childAttrs makes the kernel SIGKILL enrolld if the test binary dies first (a test timeout
// panics without running cleanups), so no server outlives its test.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
