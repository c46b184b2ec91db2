//go:build !linux

package intercept

func runHelper(mode string, args []string) int { return 2 }
