"""``python -m ulma.include [--cflags | --pkgconfig-dir | --cmake-dir]``."""

from __future__ import annotations

import argparse

from ulma.include import cmake_dir, get_include, pkgconfig_dir


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m ulma.include",
                                description="Where ulma's C/C++ header (ulma/ulma.h) is.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--cflags", action="store_true", help="print the compiler flag (-I...)")
    what.add_argument("--pkgconfig-dir", action="store_true", help="print the directory of ulma.pc")
    what.add_argument("--cmake-dir", action="store_true", help="print the directory of ulmaConfig.cmake")
    args = p.parse_args()
    if args.cflags:
        print(f"-I{get_include()}")
    elif args.pkgconfig_dir:
        print(pkgconfig_dir())
    elif args.cmake_dir:
        print(cmake_dir())
    else:
        print(get_include())


if __name__ == "__main__":
    main()
