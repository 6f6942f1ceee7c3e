"""Streaming a session to a collector on another machine (``ulma run --to``,
``ulma attach --to``, ``ulma collect``), with the hosts' clocks aligned.

``wire``: addresses, the token, the handshake and the messages;
``sender``: the monitor's side (a bounded queue, never waited on by the drain);
``clocks``: NTP-style offset estimates; ``collector``: the collector;
``merged``: the collector's multi-host trace and its Chrome export.
"""
