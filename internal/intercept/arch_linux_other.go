//go:build linux && !amd64 && !arm64

package intercept

// nativeArch zero means the filter has not been written for this architecture; Start refuses.
const nativeArch = 0

const x32Bit = 0
