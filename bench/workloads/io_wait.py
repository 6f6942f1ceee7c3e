"""Compute interleaved with waiting: a sleep, a socket round trip to a helper thread that
sleeps before answering, and a blocking pipe read the helper fills a moment later.

A profiler's overhead here should be paid on the compute part only; waits must stay waits.
"""

import os
import socket
import sys
import threading
import time

ITERATIONS = 100
SLEEP_S = 0.003
HELPER_DELAY_S = 0.001
CRUNCH_SIZE = 2_500


def digit_sum(n: int) -> int:
    total = 0
    while n:
        n, digit = divmod(n, 10)
        total += digit
    return total


def crunch(size: int, salt: int) -> int:
    """A few milliseconds of ordinary Python work: calls, loops and integer arithmetic."""
    acc = salt
    for n in range(size):
        acc = (acc * 33 + digit_sum(n + salt)) % 65_521
    return acc


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise EOFError("helper closed the socket")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("helper closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def helper(sock: socket.socket, pipe_w: int) -> None:
    """Answer each request after a short sleep, then write to the pipe after another."""
    while True:
        request = sock.recv(64)
        if not request:
            break
        time.sleep(HELPER_DELAY_S)
        sock.sendall(request[::-1])
        time.sleep(HELPER_DELAY_S)
        os.write(pipe_w, bytes([len(request)]) * len(request))
    os.close(pipe_w)


def main() -> None:
    ours, theirs = socket.socketpair()
    pipe_r, pipe_w = os.pipe()
    thread = threading.Thread(target=helper, args=(theirs, pipe_w), name="io-helper")
    thread.start()

    start = time.perf_counter()
    check = 0
    for i in range(ITERATIONS):
        check = crunch(CRUNCH_SIZE, check + i)
        time.sleep(SLEEP_S)
        message = f"req{i:05d}".encode()
        ours.sendall(message)
        check += sum(recv_exact(ours, len(message)))
        check += sum(read_exact(pipe_r, len(message)))
    elapsed = time.perf_counter() - start

    ours.close()  # the helper sees EOF and exits
    thread.join()
    theirs.close()
    os.close(pipe_r)
    print(f"BENCH_CHECK={check}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
