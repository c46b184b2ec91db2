package httproute

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxChunkLine bounds a chunk-size line, extensions included.
const maxChunkLine = 4096

// writeError marks an error from writing to a copy's destination, so that callers can tell
// which side of a copy failed.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func isWriteError(err error) bool {
	var we *writeError
	return errors.As(err, &we)
}

// markWrites wraps a writer so that its errors are *writeError.
type markWrites struct{ w io.Writer }

func (m markWrites) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// copyBody copies one message body, delimited as f says (n is the length for lengthBody), from
// br to w, byte for byte.
func copyBody(w io.Writer, br *bufio.Reader, f framing, n int64) error {
	switch f {
	case lengthBody:
		_, err := io.CopyN(w, br, n)
		return unexpectedEOF(err)
	case chunkedBody:
		return copyChunked(w, br)
	case closeBody:
		_, err := io.Copy(w, br)
		return err
	}
	return nil
}

// copyChunked copies one chunked body (chunks, last chunk, trailer section, final empty line)
// from br to w exactly as read, checking its framing as it goes.
func copyChunked(w io.Writer, br *bufio.Reader) error {
	for {
		line, err := readLine(br, maxChunkLine)
		if err != nil {
			return fmt.Errorf("read chunk size line: %w", unexpectedEOF(err))
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return err
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		if size == 0 {
			break
		}
		if _, err := io.CopyN(w, br, size); err != nil {
			return fmt.Errorf("copy chunk data: %w", unexpectedEOF(err))
		}
		crlf, err := br.Peek(2)
		if err != nil {
			return fmt.Errorf("read end of chunk: %w", unexpectedEOF(err))
		}
		if string(crlf) != "\r\n" {
			return fmt.Errorf("chunk data not followed by CRLF: %q", crlf)
		}
		if _, err := w.Write(crlf); err != nil {
			return err
		}
		br.Discard(2)
	}
	// The trailer section: field lines, then an empty line.
	total := 0
	for {
		line, err := readLine(br, maxHeadBytes-total)
		if err != nil {
			return fmt.Errorf("read trailer section: %w", unexpectedEOF(err))
		}
		total += len(line)
		if _, err := w.Write(line); err != nil {
			return err
		}
		if isEmptyLine(line) {
			return nil
		}
	}
}

// parseChunkSize parses a chunk-size line: hex size, optional extensions, CRLF.
func parseChunkSize(line []byte) (int64, error) {
	rest, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok {
		return 0, fmt.Errorf("chunk size line %q does not end with CRLF", line)
	}
	digits := 0
	for digits < len(rest) && isHexDigit(rest[digits]) {
		digits++
	}
	size, err := strconv.ParseInt(string(rest[:digits]), 16, 64)
	if digits == 0 || err != nil {
		return 0, fmt.Errorf("bad chunk size line %q", line)
	}
	ext := bytes.TrimLeft(rest[digits:], " \t")
	if len(ext) > 0 && ext[0] != ';' {
		return 0, fmt.Errorf("bad chunk size line %q", line)
	}
	for _, c := range ext {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, fmt.Errorf("control character in chunk extension %q", line)
		}
	}
	return size, nil
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// unexpectedEOF turns io.EOF into io.ErrUnexpectedEOF: the message was not complete.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
