"""A listening Linux abstract Unix socket under a fresh, unguessable name:
the idle agent's (ulma.agent.listener) and the monitor's socket for the
program's children (ulma.monitor.children).

It imports `_socket` alone: the `socket` module (its enums, selectors) takes
about 5 ms to import, and the children's socket is made on `ulma run`'s way
to the program's first line.  Callers wrap it in a `socket.socket` (with
``socket.socket(fileno=sock.detach())``) where they need that module's API.
"""

from __future__ import annotations

import _socket
import errno
import os


def listening_socket(prefix: str, backlog: int, name_bytes: int, what: str) -> tuple[_socket.socket, str]:
    """A blocking socket listening at "\\0<prefix><this pid>-<name_bytes random bytes, hex>",
    and that address; OSError if no free name is found in a few tries."""
    for _ in range(8):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(None)  # blocking, whatever socket.setdefaulttimeout() the program chose
        address = f"\0{prefix}{os.getpid()}-{os.urandom(name_bytes).hex()}"
        try:
            sock.bind(address)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue  # taken (by chance, or by someone who guessed): another name
            raise
        return sock, address
    raise OSError(errno.EADDRINUSE, f"no free name for {what}")
