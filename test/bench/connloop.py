#!/usr/bin/python3
"""New TCP connections per second, one HTTP request per connection, for scripts/bench.sh.

Usage: connloop.py HOST PORT SECONDS WORKERS

Each worker (a forked process, so that the workers do not queue on Python's global lock) loops
for SECONDS: connect (blocking), send one GET with "Connection: close", read the answer to EOF,
close. It prints "connections_per_second N" and "errors N". It is a Python program on purpose:
python3 is dynamically linked, so proxychains4's LD_PRELOAD works on it, and the same client
runs in every column of the row.
"""
import os
import socket
import sys
import time


def loop(host, port, deadline, request):
    count = errors = 0
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((host, port), timeout=10)
            try:
                s.sendall(request)
                got = b""
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            finally:
                s.close()
            if got.startswith(b"HTTP/1.1 200"):
                count += 1
            else:
                errors += 1
        except OSError:
            errors += 1
    return count, errors


def main():
    host, port, seconds, workers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    request = ("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode()
    start = time.monotonic()
    deadline = start + seconds
    children = []
    for _ in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            count, errors = loop(host, port, deadline, request)
            os.write(w, b"%d %d\n" % (count, errors))
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    total = errors = 0
    for pid, r in children:
        with os.fdopen(r) as f:
            line = f.read().split()
        os.waitpid(pid, 0)
        if len(line) == 2:
            total += int(line[0])
            errors += int(line[1])
        else:
            errors += 1
    elapsed = time.monotonic() - start
    print("connections_per_second %.1f" % (total / elapsed))
    print("errors %d" % errors)
    if total == 0:
        sys.exit(1)


main()
