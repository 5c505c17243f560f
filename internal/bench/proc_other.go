//go:build !linux

package bench

import "os/exec"

// setPdeathsig is Linux-only; elsewhere the benchmark (which reads /proc) does not run anyway.
func setPdeathsig(*exec.Cmd) {}
