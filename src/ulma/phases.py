"""Named regions of Python code as native scopes (ulma.h's scopes, from Python).

    from ulma.phases import site

    LOAD = site("load")          # once, at module level: names the site (this file and line)

    def work():
        with LOAD:               # a scope of LOAD until the block ends
            ...

Under ulma (or an `ulma attach`) a scope nests in the thread's stack as a C extension's scopes
do, between the function that opened it and what it calls; otherwise `with` costs a C call and
one branch.  ulma's monitor marks its own phases this way (drain, snapshot, render, trace
writing, compression), so that `ulma attach <monitor pid>` or `ulma run --self-profile` shows
where the monitor spends its time.
"""

from __future__ import annotations

import sys

from ulma._core import Site

__all__ = ["Site", "site"]


def site(name: str) -> Site:
    """A site named `name` at the caller's file and line."""
    caller = sys._getframe(1)
    return Site(name, caller.f_code.co_filename, caller.f_lineno)
