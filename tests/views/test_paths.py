"""Source paths shown short: relative to the working directory, an installed package, the standard
library; shortened further to fit a width with the file's name kept last."""

from __future__ import annotations

import json.decoder

import pytest

from ulma.views.paths import elide, location, roots, short


def test_a_file_in_the_working_directory_is_shown_relative_to_it() -> None:
    assert short("/home/u/proj/app/main.py", roots("/home/u/proj")) == "app/main.py"
    assert location("/home/u/proj/app/main.py", 12, roots("/home/u/proj")) == "app/main.py:12"
    assert short("/home/u/projects/x.py", roots("/home/u/proj")) == "/home/u/projects/x.py"  # not inside


def test_this_pythons_standard_library_and_site_packages_are_named_from_their_folders() -> None:
    assert json.decoder.__file__ is not None and pytest.__file__ is not None
    assert short(json.decoder.__file__, roots("/nowhere")) == "<stdlib>/json/decoder.py"
    assert short(pytest.__file__, roots("/nowhere")) == "pytest/__init__.py"


def test_another_pythons_folders_are_known_by_their_shape() -> None:
    where = roots("/nowhere")
    assert short("/usr/lib/python3.9/json/decoder.py", where) == "<stdlib>/json/decoder.py"
    assert short("/usr/lib64/python3.13t/asyncio/base_events.py", where) == "<stdlib>/asyncio/base_events.py"
    assert short("/opt/v/lib/python3.10/site-packages/requests/sessions.py", where) == "requests/sessions.py"
    assert short("/usr/lib/python3/dist-packages/apt/cache.py", where) == "apt/cache.py"


def test_a_virtual_environment_inside_the_working_directory_names_files_from_the_package() -> None:
    where = roots("/home/u/proj")
    assert short("/home/u/proj/.venv/lib/python3.12/site-packages/numpy/core.py", where) == "numpy/core.py"


def test_names_that_are_not_paths_stay_as_they_are() -> None:
    assert short("<frozen importlib._bootstrap>", roots("/")) == "<frozen importlib._bootstrap>"
    assert short("<string>", roots("/x")) == "<string>"


def test_elide_gives_up_leading_folders_first_then_the_file_name_is_cut() -> None:
    text = "<stdlib>/json/decoder.py:343"
    assert elide(text, 40) == text
    assert elide(text, 27) == "…/json/decoder.py:343"
    assert elide(text, 20) == "…/decoder.py:343"
    assert elide(text, 15) == "decoder.py:343"
    assert elide(text, 8) == "decoder…"
    assert elide(text, 0) == ""
    for width in range(1, 40):
        assert len(elide(text, width)) <= width
