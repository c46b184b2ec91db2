package intercept

import "golang.org/x/sys/unix"

// nativeArch is the AUDIT_ARCH_* value of the system call ABI the filter inspects; calls made
// through another ABI (32-bit arm compat) are allowed unseen.
const nativeArch = unix.AUDIT_ARCH_AARCH64

// x32Bit is zero: arm64 has no x32-style ABI sharing the architecture value.
const x32Bit = 0
