"""The PEP 523 engine's stack switch (src/ulma/_core/stack_switch.h), built alone into a C driver
(stack_switch_test.c) for x86-64 and aarch64 and run: natively on a machine of that kind, else
cross-compiled and run under qemu user emulation.  The driver's ground truth is its own: patterns it
loads into the callee-saved registers before the switch, a function it runs on a segment it
allocated, and a result it computes again on its own stack."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest

from tests.conftest import missing_dependency, run_process

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "stack_switch_test.c"
HEADER = HERE.parents[1] / "src" / "ulma" / "_core" / "stack_switch.h"
FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-static"]

# machine: (cross compiler, emulator, Debian packages)
CROSS = {
    "aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64", "gcc-aarch64-linux-gnu, qemu-user"),
    "x86_64": ("x86_64-linux-gnu-gcc", "qemu-x86_64", "gcc-x86-64-linux-gnu, qemu-user"),
}
# per machine: the register the switch must give back, and one line of stack_switch.h that
# gives it back, with a version that does not (the driver must catch it)
RESTORE_FP = {
    "aarch64": ("x29 (fp)", '"    ldp x29, x30, [sp], #16\\n"',
                '"    ldr x30, [sp, #8]\\n add sp, sp, #16\\n"'),
    "x86_64": ("rbp", '"    popq %rbp\\n"', '"    addq $8, %rsp\\n"'),
}


def _native_machine() -> str:
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)


def _build_and_run(machine: str, include: Path, out: Path) -> tuple[int, str]:
    """(exit code, stdout) of the driver built for `machine` with stack_switch.h from `include`."""
    if machine == _native_machine():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            missing_dependency("no C compiler (Debian package gcc)")
        runner: list[str] = []
    else:
        cross, emulator, packages = CROSS[machine]
        found_cc, found_emu = shutil.which(cross), shutil.which(emulator)
        if found_cc is None or found_emu is None:
            missing_dependency(f"`{cross}` or `{emulator}` is not installed (Debian packages {packages}): "
                               f"cannot build and run the {machine} stack switch")
        cc, runner = found_cc, [found_emu]
    built = run_process([cc, *FLAGS, f"-I{include}", str(DRIVER), "-o", str(out)], timeout=120)
    assert built.returncode == 0, f"the {machine} driver did not build:\n{built.stderr}"
    ran = run_process([*runner, str(out)], timeout=60)
    return ran.returncode, ran.stdout + ran.stderr


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_stack_switch_runs_fn_on_the_segment_and_gives_back_every_callee_saved_register(
    machine: str, tmp_path: Path
) -> None:
    code, output = _build_and_run(machine, HEADER.parent, tmp_path / f"switch-{machine}")
    assert code == 0 and "stack switch: all checks passed" in output, output
    regs = 6 if machine == "x86_64" else 19
    assert output.count("callee-saved") == regs, output
    assert "ok: an unwinder walks from fn through the switch back to its caller" in output, output


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_driver_fails_on_a_switch_that_does_not_restore_the_frame_pointer(
    machine: str, tmp_path: Path
) -> None:
    register, good, bad = RESTORE_FP[machine]
    text = HEADER.read_text()
    assert text.count(good) == 1, f"stack_switch.h no longer restores {register} with {good}"
    (tmp_path / "stack_switch.h").write_text(text.replace(good, bad))
    code, output = _build_and_run(machine, tmp_path, tmp_path / f"broken-{machine}")
    assert code == 1, output
    assert f"FAIL: callee-saved {register} kept across the switch" in output, output
