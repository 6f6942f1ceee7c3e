"""What crosses the network between a monitor (``--to``) and ``ulma collect``.

Connection, in order:

1. the collector sends ``MAGIC`` and a random 32-byte challenge;
2. the monitor answers ``MAGIC``, a random 32-byte nonce of its own and
   HMAC-SHA256(token, "client" | challenge | nonce);
3. the collector checks it (``hmac.compare_digest``) and answers ``OK`` with
   HMAC-SHA256(token, "server" | nonce | challenge), which the monitor checks in
   turn -- or ``NO`` and one line saying why, and closes.

The token never crosses the wire, and neither side talks to a peer that does not
hold it.  Then each side sends frames: ``u32 length | u8 type | payload``.  The
monitor's frames go through one zstd stream per connection (flushed block by
block, so each frame can be read as soon as it arrives); the collector's few
small frames (pings, acknowledgements) go as they are.

Every message that must not be lost (symbols, events, the finish) carries a
sequence number; the collector acknowledges what it has, the monitor keeps what
is not acknowledged and, after a reconnection, sends it again from where the
collector says it stopped (``RESUME``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import os
import struct
from typing import Final

MAGIC: Final = b"ULMAFLT1"
NONCE_BYTES: Final = 32
OK, NO = b"\x01", b"\x00"
HEADER: Final = struct.Struct("<IB")
MAX_FRAME: Final = 64 << 20  # a frame longer than this is refused (an events frame: a drain of ~16 MiB)
MAX_REASON: Final = 200
TOKEN_ENV: Final = "ULMA_TOKEN"
MIN_TOKEN: Final = 8  # bytes of a token at least
MAX_TOKEN_FILE: Final = 4096

# monitor -> collector
HELLO, SYMBOLS, EVENTS, AGGREGATE, PONG, FINISH = b"H", b"S", b"E", b"A", b"P", b"F"
# collector -> monitor
RESUME, ACK, PING = b"R", b"K", b"I"

SEQ: Final = struct.Struct("<Q")
TIME: Final = struct.Struct("<q")
PONG_BODY: Final = struct.Struct("<qqq")  # the collector's t1, the host's receive t2 and send t3
EVENTS_HEAD: Final = struct.Struct("<QdI")  # seq, ns per tick now, chunks
EVENTS_CHUNK: Final = struct.Struct("<II")  # thread, bytes


class WireError(Exception):
    """The peer broke the protocol or refused us; the message says it in one line."""


def parse_address(text: str, option: str, *, any_port: bool = False) -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT for IPv6); ValueError saying what is wrong, in words.  `any_port`:
    port 0 too (listen on a port the system picks, said on stderr)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{option} must be HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{option}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{option}: write an IPv6 address in brackets, as [::1]:PORT, not {text!r}")
    low = 0 if any_port else 1
    if not port.isdigit() or not low <= int(port) <= 65535:
        raise ValueError(f"{option}: the port must be a number from {low} to 65535, not {port!r}")
    if any(c.isspace() for c in host):
        raise ValueError(f"{option}: {host!r} is not a host name")
    return host, int(port)


def read_token(token_file: str | None) -> bytes:
    """The shared token: the file --token-file names, else $ULMA_TOKEN (never an argument: argv is
    visible to every user in `ps`).  ValueError saying what is missing."""
    if token_file:
        try:
            with open(token_file, "rb") as f:
                data = f.read(MAX_TOKEN_FILE + 1)
        except OSError as exc:
            raise ValueError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        if len(data) > MAX_TOKEN_FILE:
            raise ValueError(f"the token file {token_file} is longer than {MAX_TOKEN_FILE} bytes")
        token = data.strip()
        where = f"the token file {token_file}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip().encode()
        where = TOKEN_ENV
        if not token:
            raise ValueError(f"a token is needed: set {TOKEN_ENV} (the same on both sides) or give "
                             "--token-file")
    if len(token) < MIN_TOKEN:
        raise ValueError(f"{where} holds a token of {len(token)} bytes: use at least {MIN_TOKEN}")
    return token


def proof(token: bytes, side: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(token, side + b"|" + first + second, hashlib.sha256).digest()


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(len(payload) + 1, kind[0]) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next uncompressed frame (the collector's side of the stream)."""
    head = await reader.readexactly(HEADER.size)
    length, kind = HEADER.unpack(head)
    if not 1 <= length <= MAX_FRAME:
        raise WireError(f"a frame of {length} bytes")
    return bytes([kind]), await reader.readexactly(length - 1)


class FrameBuffer:
    """Frames out of a byte stream that arrives in pieces (after decompression)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.data += data
        out = []
        at = 0
        while len(self.data) - at >= HEADER.size:
            length, kind = HEADER.unpack_from(self.data, at)
            if not 1 <= length <= MAX_FRAME:
                raise WireError(f"a frame of {length} bytes")
            if len(self.data) - at - HEADER.size < length - 1:
                break
            start = at + HEADER.size
            out.append((bytes([kind]), bytes(self.data[start:start + length - 1])))
            at = start + length - 1
        del self.data[:at]
        return out


async def client_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           token: bytes) -> None:
    """The monitor's side of the handshake; WireError if refused or if the peer is no collector of
    ours."""
    head = await reader.readexactly(len(MAGIC) + NONCE_BYTES)
    if head[:len(MAGIC)] != MAGIC:
        raise WireError("the peer is not an ulma collector")
    challenge = head[len(MAGIC):]
    nonce = os.urandom(NONCE_BYTES)
    writer.write(MAGIC + nonce + proof(token, b"client", challenge, nonce))
    await writer.drain()
    status = await reader.readexactly(1)
    if status == NO:
        n = (await reader.readexactly(1))[0]
        reason = (await reader.readexactly(n)).decode("utf-8", "replace")
        raise WireError(f"the collector refused us: {reason}")
    answer = await reader.readexactly(32)
    if status != OK or not hmac.compare_digest(answer, proof(token, b"server", nonce, challenge)):
        raise WireError("the collector does not hold our token")


async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           token: bytes) -> None:
    """The collector's side; WireError (after telling the peer in one line) if it is refused."""
    challenge = os.urandom(NONCE_BYTES)
    writer.write(MAGIC + challenge)
    await writer.drain()
    head = await reader.readexactly(len(MAGIC) + NONCE_BYTES + 32)
    if head[:len(MAGIC)] != MAGIC:
        await refuse(writer, "not an ulma monitor")
        raise WireError("not an ulma monitor")
    nonce = head[len(MAGIC):len(MAGIC) + NONCE_BYTES]
    if not hmac.compare_digest(head[len(MAGIC) + NONCE_BYTES:], proof(token, b"client", challenge, nonce)):
        await refuse(writer, "wrong token")
        raise WireError("wrong token")
    writer.write(OK + proof(token, b"server", nonce, challenge))
    await writer.drain()


async def refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    data = reason.encode()[:MAX_REASON]
    writer.write(NO + bytes([len(data)]) + data)
    with contextlib.suppress(OSError):
        await writer.drain()
