package bench

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel kill the child if the benchmark dies first.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
