"""ulma's public header (ulma/ulma.h, ulma/ulma.hpp) on its own: it compiles warning-free
(-Wall -Wextra -Werror -pedantic) as C99, C11, C++11 and C++17, with and without ULMA_DISABLE,
without Python.h; a program using it runs and does nothing when no ulma is in the process; with
ULMA_DISABLE nothing of it is left in the object; CMake finds it through ulmaConfig.cmake."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing_dependency
from ulma import include

PROGRAM = r"""
#include <ulma/ulma.h>
#include <stdio.h>
static int work(int n) { ULMA_SCOPE("work"); ULMA_MARK("m"); ULMA_COUNTER("c", n); return n + 1; }
int main(void) {
    int s = 0;
    for (int i = 0; i < 3; i++) { ULMA_SCOPE("loop"); s += work(i); }
    ulma_site site = ULMA_SITE_INIT("manual", ULMA_SITE_SCOPE);
    ulma_scope sc = ulma_scope_begin(&site);
    ulma_scope_end(sc);
    printf("%d\n", s);
    return 0;
}
"""

CXX_PROGRAM = r"""
#include <ulma/ulma.hpp>
#include <cstdio>
ULMA_SITE(load_site, "load");
ULMA_COUNTER_SITE(depth_site, "depth");
static int work(int n) {
    ULMA_SCOPE("work");
    ulma::Scope s(load_site);
    ulma::counter(depth_site, n);
    return n + 1;
}
int main() { int s = 0; for (int i = 0; i < 3; i++) s += work(i); std::printf("%d\n", s); return 0; }
"""

FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def compiler(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = "g++" if name == "g++" else "gcc"
        missing_dependency(f"the header is compiled with {name} (Debian package: {package})")
    return found


@pytest.mark.parametrize("disable", [False, True], ids=["on", "disabled"])
@pytest.mark.parametrize(("cc", "std", "source"), [
    ("gcc", "c99", PROGRAM), ("gcc", "c11", PROGRAM),
    ("g++", "c++11", PROGRAM), ("g++", "c++17", PROGRAM),
    ("g++", "c++11", CXX_PROGRAM), ("g++", "c++17", CXX_PROGRAM),
], ids=["c99", "c11", "c++11", "c++17", "hpp-c++11", "hpp-c++17"])
def test_the_header_compiles_warning_free_and_runs_without_ulma(
    tmp_path: Path, cc: str, std: str, source: str, disable: bool,
) -> None:
    src = tmp_path / ("prog.c" if cc == "gcc" else "prog.cpp")
    src.write_text(source)
    exe = tmp_path / "prog"
    cmd = [compiler(cc), f"-std={std}", *FLAGS, f"-I{include.get_include()}",
           *(["-DULMA_DISABLE"] * disable), str(src), "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(exe)], capture_output=True, text=True, check=False, timeout=30)
    assert ran.returncode == 0 and ran.stdout.strip() == "6", ran
    symbols = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=False).stdout
    if disable:
        assert "ulma" not in symbols, symbols  # nothing left of it
    else:
        assert "ulma_hook_v1" in symbols, symbols  # the module's hook, for the runtime to find


def test_cmake_finds_the_header_through_its_config_file(tmp_path: Path) -> None:
    if shutil.which("cmake") is None:
        missing_dependency("the CMake config file is read by cmake (Debian package: cmake)")
    compiler("gcc")
    (tmp_path / "prog.c").write_text(PROGRAM)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(scoped C)\n"
        "find_package(ulma CONFIG REQUIRED)\nadd_executable(prog prog.c)\n"
        "target_link_libraries(prog PRIVATE ulma::ulma)\n")
    build = tmp_path / "build"
    configure = subprocess.run(
        ["cmake", "-S", str(tmp_path), "-B", str(build), f"-Dulma_DIR={include.cmake_dir()}"],
        capture_output=True, text=True, check=False, timeout=120)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    made = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True, check=False,
                          timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    ran = subprocess.run([str(build / "prog")], capture_output=True, text=True, check=False, timeout=30)
    assert ran.stdout.strip() == "6", ran
