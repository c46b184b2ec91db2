// Command readfiles does file operations and prints one line per operation, for the tests of
// remote files: each argument is OP:PATH[:ARG], and the line is "OP PATH: RESULT" or
// "OP PATH: error: ERRNO-TEXT". Operations: read (the content, quoted), stat (size and
// mode), lstat, readlink, ls (the names, sorted), sha (sha256 of the whole file, read in 1 MiB
// chunks), at (ARG bytes at offset... "at:PATH:OFFSET:N" reads N bytes at OFFSET, quoted),
// write (writes ARG, creating or truncating), append, mkdir, rmdir, rm, mv (to ARG), access
// (R_OK|W_OK by ARG "r", "w" or "rw"), exe (reads its own executable's first 4 bytes), mmap
// (maps the file and quotes its first ARG bytes), truncate (to ARG bytes). Built
// static (CGO_ENABLED=0), so that nothing but the kernel's calls are involved.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	for _, arg := range os.Args[1:] {
		op, rest, _ := strings.Cut(arg, ":")
		path, extra, _ := strings.Cut(rest, ":")
		res, err := do(op, path, extra)
		if err != nil {
			if pe, ok := err.(*os.PathError); ok {
				err = pe.Err
			}
			if le, ok := err.(*os.LinkError); ok {
				err = le.Err
			}
			fmt.Printf("%s %s: error: %v\n", op, path, err)
			continue
		}
		fmt.Printf("%s %s: %s\n", op, path, res)
	}
}

func do(op, path, arg string) (string, error) {
	switch op {
	case "read":
		b, err := os.ReadFile(path)
		return strconv.Quote(string(b)), err
	case "stat", "lstat":
		st := os.Stat
		if op == "lstat" {
			st = os.Lstat
		}
		fi, err := st(path)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("size %d mode %v", fi.Size(), fi.Mode()), nil
	case "readlink":
		return os.Readlink(path)
	case "ls":
		es, err := os.ReadDir(path)
		if err != nil {
			return "", err
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		return strings.Join(names, " "), nil
	case "sha":
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	case "at":
		offS, nS, _ := strings.Cut(arg, ":")
		off, _ := strconv.ParseInt(offS, 10, 64)
		n, _ := strconv.Atoi(nS)
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			return "", err
		}
		return strconv.Quote(string(b)), nil
	case "write":
		return "ok", os.WriteFile(path, []byte(arg), 0o644)
	case "append":
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return "", err
		}
		defer f.Close()
		_, err = f.WriteString(arg)
		return "ok", err
	case "mkdir":
		return "ok", os.Mkdir(path, 0o755)
	case "rmdir", "rm":
		return "ok", os.Remove(path)
	case "mv":
		return "ok", os.Rename(path, arg)
	case "access":
		mode := uint32(0)
		if strings.Contains(arg, "r") {
			mode |= 4
		}
		if strings.Contains(arg, "w") {
			mode |= 2
		}
		return "ok", syscall.Access(path, mode)
	case "mmap":
		n, _ := strconv.Atoi(arg)
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		m, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return "", err
		}
		defer syscall.Munmap(m)
		return strconv.Quote(string(m)), nil
	case "truncate":
		n, _ := strconv.ParseInt(arg, 10, 64)
		return "ok", os.Truncate(path, n)
	case "exe":
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		f, err := os.Open(exe)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b := make([]byte, 4)
		_, err = io.ReadFull(f, b)
		return strconv.Quote(string(b)), err
	}
	return "", fmt.Errorf("unknown operation %q", op)
}
