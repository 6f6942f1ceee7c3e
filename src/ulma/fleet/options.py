"""The --to options of `ulma run` and `ulma attach` (and the token's of `ulma collect`), read
without importing what the stream needs (asyncio, ssl, zstd): `ulma run` reads them on its way to
starting the program."""

from __future__ import annotations

import argparse

MODES = ("aggregates", "events")

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing is never imported by `ulma run`: tests/integration/test_footprint.py)
    import ssl

    from ulma.fleet.sender import Streamer


def add_stream_to_argument(p: argparse.ArgumentParser) -> None:
    """--to and what goes with it (`ulma run`, `ulma attach`)."""
    p.add_argument("--to", metavar="HOST:PORT",
                   help="stream the session while it runs to `ulma collect` at HOST:PORT (the "
                        "token: $ULMA_TOKEN or --token-file, the same as the collector's); the "
                        "local report and -o keep everything whatever happens to the stream")
    p.add_argument("--to-send", choices=MODES, default="aggregates",
                   help="with --to: every function's figures twice a second (aggregates), or those "
                        "and every event as recorded, with the symbols (events; see bench/fleet.py "
                        "for the bandwidth of each) (default: aggregates)")
    add_token_arguments(p)


def add_token_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token-file", metavar="FILE",
                   help="read the shared token from FILE instead of $ULMA_TOKEN (never give it on "
                        "the command line: `ps` shows that to everyone)")
    p.add_argument("--tls-cert", metavar="FILE", help="TLS: this side's certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="TLS: this side's private key (PEM)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="TLS: the certificate authority the other side's certificate must be signed "
                        "by (PEM); with --tls-cert and --tls-key, the connection is TLS with a "
                        "certificate required on both sides")


def tls_context(opts: argparse.Namespace, server: bool) -> ssl.SSLContext | None:
    """--tls-*: none of them (plain TCP), or all three; ValueError saying what is wrong."""
    given = [opts.tls_cert, opts.tls_key, opts.tls_ca]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
    import ssl

    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    try:
        ctx = ssl.create_default_context(purpose, cafile=opts.tls_ca)
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS: {getattr(exc, 'strerror', None) or exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if server:
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False  # the certificate is checked against --tls-ca, not a name
    return ctx


def streamer_from(opts: argparse.Namespace) -> Streamer | None:
    """The --to options checked before anything runs; UsageError in one line."""
    from ulma.cli.errors import UsageError

    if not opts.to:
        if opts.token_file or opts.to_send != "aggregates" or opts.tls_cert or opts.tls_key or opts.tls_ca:
            raise UsageError("--to-send, --token-file and --tls-* go with --to HOST:PORT")
        return None
    from ulma.fleet import wire

    try:
        address = wire.parse_address(opts.to, "--to")
        token = wire.read_token(opts.token_file)
        tls = tls_context(opts, server=False)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from ulma.fleet.sender import Streamer

    return Streamer(address, token, opts.to_send, tls)
