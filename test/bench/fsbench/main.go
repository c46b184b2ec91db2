// Command fsbench measures file operations for the benchmark of doppel's remote files
// (scripts/bench.sh): open+read+close of a small file, stat of it, and a streaming read of a
// large file. It prints "<op> <count> <value>" lines: ns per operation for open_read_close and
// stat, MB/s for stream. Built static (CGO_ENABLED=0).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	small := flag.String("small", "", "small file to open, read and close, and stat")
	big := flag.String("big", "", "large file to read from start to end")
	dur := flag.Duration("d", 2*time.Second, "how long to repeat each small-file operation")
	flag.Parse()
	if err := run(*small, *big, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "fsbench:", err)
		os.Exit(1)
	}
}

func run(small, big string, dur time.Duration) error {
	buf := make([]byte, 64<<10)
	if small != "" {
		n, start := 0, time.Now()
		for time.Since(start) < dur {
			for range 100 {
				f, err := os.Open(small)
				if err != nil {
					return err
				}
				if _, err := f.Read(buf); err != nil && err != io.EOF {
					return err
				}
				f.Close()
			}
			n += 100
		}
		fmt.Printf("open_read_close %d %.0f\n", n, float64(time.Since(start).Nanoseconds())/float64(n))
		n, start = 0, time.Now()
		for time.Since(start) < dur {
			for range 100 {
				if _, err := os.Stat(small); err != nil {
					return err
				}
			}
			n += 100
		}
		fmt.Printf("stat %d %.0f\n", n, float64(time.Since(start).Nanoseconds())/float64(n))
	}
	if big != "" {
		f, err := os.Open(big)
		if err != nil {
			return err
		}
		defer f.Close()
		start := time.Now()
		total, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
		if err != nil {
			return err
		}
		fmt.Printf("stream %d %.0f\n", total, float64(total)/time.Since(start).Seconds()/1e6)
	}
	return nil
}
