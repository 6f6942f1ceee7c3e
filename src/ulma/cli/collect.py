"""``ulma collect``: receive the sessions that `ulma run --to` and `ulma attach --to` stream."""

from __future__ import annotations

from ulma.cli.errors import Parser, UsageError

HELP = "collect the sessions that `ulma run/attach --to` stream from other hosts; per host and merged"


def execute(argv: list[str]) -> int:
    from ulma.fleet import wire
    from ulma.fleet.options import add_token_arguments, tls_context

    p = Parser(prog="ulma collect", description=HELP)
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="the address to listen on, and only there (as 127.0.0.1:7000, 10.0.0.1:7000, "
                        "[::1]:7000; port 0: one the system picks, said on stderr; "
                        "the token: $ULMA_TOKEN or --token-file, the monitors' own)")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after SECONDS (else: SIGINT, SIGTERM)")
    p.add_argument("--json", metavar="FILE",
                   help="when it stops, write every host's processes (their figures and clock offsets) "
                        "and the functions added up across them, as JSON, to FILE")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write the streamed events (`--to-send events`) to the merged trace DIR (made "
                        "new): a trace per host and process and their clock offsets; `ulma export "
                        "--format chrome DIR` puts them on one time line")
    p.add_argument("--no-table", action="store_true",
                   help="print no table of hosts and processes (every 2 s and at the end) on stdout")
    p.add_argument("--web", action="store_true",
                   help="serve the live view in a browser too, on 127.0.0.1 (its address with its token "
                        "on stderr): each host's processes and all of them merged")
    add_token_arguments(p)
    opts = p.parse(argv)
    try:
        host, port = wire.parse_address(opts.listen, "--listen", any_port=True)
        token = wire.read_token(opts.token_file)
        tls = tls_context(opts, server=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from ulma.cli.run import check_output

    if opts.json:
        check_output(opts.json)
    if opts.output:
        import os

        if os.path.lexists(opts.output):
            raise UsageError(f"{opts.output} exists: -o makes a new directory", 1)
    from ulma.fleet.collector import collect

    try:
        return collect(host, port, token, tls, duration=opts.duration, json_path=opts.json,
                       trace_dir=opts.output, table=not opts.no_table, web=opts.web)
    except OSError as exc:
        raise UsageError(f"cannot listen on {opts.listen}: {exc.strerror or exc}", 1) from None
