//go:build !linux || !cgo

package gormstore

// releaseFreedMemory has nothing to do where the C allocator is not glibc's.
func releaseFreedMemory() {}
