"""A real asyncio echo server and its clients on loopback, in one process:
CLIENTS connections, each sending LINES lines and reading every echo back,
a client pausing PAUSE seconds between lines (so the server's loop is idle
in between).  Prints {"connections": n, "lines": n} as the server counted."""

import asyncio
import json

CLIENTS, LINES, PAUSE = 8, 20, 0.01
served = {"connections": 0, "lines": 0}


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    served["connections"] += 1
    while line := await reader.readline():
        served["lines"] += 1
        writer.write(line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def client(port: int, n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(LINES):
        writer.write(f"client {n} line {i}\n".encode())
        await writer.drain()
        assert await reader.readline() == f"client {n} line {i}\n".encode()
        await asyncio.sleep(PAUSE)
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    server = await asyncio.start_server(handle_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await asyncio.gather(*(client(port, n) for n in range(CLIENTS)))
        await asyncio.sleep(0.05)  # the handlers see their clients' EOF
    print(json.dumps(served))


asyncio.run(main())
