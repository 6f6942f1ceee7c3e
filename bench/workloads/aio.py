"""An asyncio server and its clients on loopback, in one process: CLIENTS
connections each make ROUNDS request/response round trips; the handler does
a little Python work per request (parsing, a checksum) and awaits the
stream.  What a profiler pays here is per coroutine step and per await, on
top of the calls: the cost of following coroutines (ulma counts their time
suspended in await as waiting)."""

import asyncio
import sys
import time

CLIENTS = 20
ROUNDS = 600


def checksum(data: bytes) -> int:
    total = 0
    for b in data:
        total = (total * 31 + b) & 0xFFFF
    return total


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        words = line.decode().split()
        writer.write(f"{words[0]} {checksum(line)}\n".encode())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def client(port: int, n: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    check = 0
    for i in range(ROUNDS):
        writer.write(f"req{n}-{i} {'x' * 40}\n".encode())
        await writer.drain()
        check += int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return check


async def main() -> int:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        checks = await asyncio.gather(*(client(port, n) for n in range(CLIENTS)))
    return sum(checks)


if __name__ == "__main__":
    start = time.perf_counter()
    check = asyncio.run(main())
    elapsed = time.perf_counter() - start
    print(f"BENCH_CHECK={check}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)
