package intercept

import "golang.org/x/sys/unix"

// nativeArch is the AUDIT_ARCH_* value of the system call ABI the filter inspects; calls made
// through another ABI (i386 on x86-64) are allowed unseen.
const nativeArch = unix.AUDIT_ARCH_X86_64

// x32Bit marks x32 ABI system call numbers on x86-64; such calls are allowed unseen.
const x32Bit = 0x40000000
