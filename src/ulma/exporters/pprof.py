"""``--format pprof``: a gzipped ``profile.proto`` for ``go tool pprof``,
Grafana Pyroscope, Google Cloud Profiler and friends.

One sample per distinct stack per thread, with two values: ``wall``
(nanoseconds spent in the innermost function itself on that stack; pprof adds
them up into flat and cumulative times) and ``calls`` (times that function was
entered on that stack: calls and resumptions, as cProfile counts).  Each
sample has a ``thread`` label.  A location is a function (ulma records no
call-site lines), its line the function's first line.  Encoded with the small
writer in ``protobuf.py`` (field numbers from pprof's ``proto/profile.proto``).
"""

from __future__ import annotations

import gzip
from typing import BinaryIO

from ulma import __version__
from ulma.exporters import protobuf as pb
from ulma.exporters.tree import StackTreeExporter
from ulma.format import runinfo, stacks

# profile.proto field numbers
P_SAMPLE_TYPE, P_SAMPLE, P_MAPPING, P_LOCATION, P_FUNCTION, P_STRINGS = 1, 2, 3, 4, 5, 6
P_TIME, P_DURATION, P_PERIOD_TYPE, P_PERIOD, P_COMMENT, P_DEFAULT_TYPE = 9, 10, 11, 12, 13, 14
VT_TYPE, VT_UNIT = 1, 2
S_LOCATION, S_VALUE, S_LABEL = 1, 2, 3
LABEL_KEY, LABEL_STR = 1, 2
M_ID, M_FILENAME, M_HAS_FUNCTIONS, M_HAS_FILENAMES, M_HAS_LINES = 1, 5, 7, 8, 9
L_ID, L_MAPPING, L_LINE = 1, 2, 4
LINE_FUNCTION, LINE_LINE = 1, 2
F_ID, F_NAME, F_FILENAME, F_START_LINE = 1, 2, 4, 5  # no system_name (3): see below


class PprofExporter(StackTreeExporter):
    REPLAY = stacks.TREE | stacks.TREE_PER_THREAD  # samples carry their thread as a label

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.strings: dict[str, int] = {"": 0}

    @property
    def with_objects(self) -> bool:
        """The run counted objects (--objects): samples carry them too."""
        return "objects_mechanism" in (self.run.end or {})

    @property
    def with_bytes(self) -> bool:
        """The objects' records told sizes (the allocator does; the ref tracer does not)."""
        return self.with_objects and any(self.bytes)

    def s(self, text: str) -> int:
        """The string's index in the string table."""
        index = self.strings.get(text)
        if index is None:
            index = self.strings[text] = len(self.strings)
        return index

    def value_type(self, kind: str, unit: str) -> bytes:
        return pb.integer(VT_TYPE, self.s(kind)) + pb.integer(VT_UNIT, self.s(unit))

    def finish(self) -> None:
        # Fields may come in any order: samples first, then what they refer to,
        # the string table last, once every string has its index.
        with gzip.GzipFile(fileobj=self.out, mode="wb", compresslevel=6, mtime=0) as z:
            z.write(pb.nested(P_SAMPLE_TYPE, self.value_type("wall", "nanoseconds")))
            z.write(pb.nested(P_SAMPLE_TYPE, self.value_type("calls", "count")))
            if self.with_objects:  # --objects: objects made, per stack, and their bytes (allocator)
                z.write(pb.nested(P_SAMPLE_TYPE, self.value_type("objects", "count")))
                if self.with_bytes:
                    z.write(pb.nested(P_SAMPLE_TYPE, self.value_type("bytes", "bytes")))
            locations = self.write_samples(z)
            self.write_functions(z, locations)
            self.write_header(z)
            for text in self.strings:  # in index order
                z.write(pb.string(P_STRINGS, text))

    def write_samples(self, z: gzip.GzipFile) -> dict[int, int]:
        """One sample per stack with time or calls; returns trace id -> location id."""
        location: dict[int, int] = {}
        location_varint: dict[int, bytes] = {}  # trace id -> its location id, encoded
        thread_label: dict[int, bytes] = {}
        key = self.s("thread")
        parent, fids, self_ns, calls, objects = self.parent, self.fid, self.self_ns, self.calls, self.objects
        with_objects, with_bytes, sizes = self.with_objects, self.with_bytes, self.bytes
        roots = self.thread_of_root
        varint, nested, location_key = pb.varint, pb.nested, pb.varint(S_LOCATION << 3 | 2)
        value_key = pb.varint(S_VALUE << 3 | 2)
        samples: list[bytes] = []
        for node in range(1, len(fids)):
            wall, count, made = self_ns[node], calls[node], objects[node]
            if parent[node] < 0 or not (wall or count or made):
                continue  # a thread's root, or a stack only passed through
            ids = []  # innermost first: up the tree to the thread's root
            at = node
            while parent[at] >= 0:
                fid = fids[at]
                code = location_varint.get(fid)
                if code is None:
                    code = location_varint[fid] = varint(location.setdefault(fid, len(location) + 1))
                ids.append(code)
                at = parent[at]
            thread = roots[at]
            label = thread_label.get(thread)
            if label is None:
                name = self.s(self.run.thread_name(thread))
                label = thread_label[thread] = nested(
                    S_LABEL, pb.integer(LABEL_KEY, key) + pb.integer(LABEL_STR, name))
            packed_ids = b"".join(ids)
            values = (varint(wall) + varint(count) + (varint(made) if with_objects else b"")
                      + (varint(sizes[node]) if with_bytes else b""))
            samples.append(nested(P_SAMPLE, location_key + varint(len(packed_ids)) + packed_ids + value_key
                                  + varint(len(values)) + values + label))
            if len(samples) >= 1024:
                z.write(b"".join(samples))
                samples.clear()
        z.write(b"".join(samples))
        return location

    def write_functions(self, z: gzip.GzipFile, locations: dict[int, int]) -> None:
        z.write(pb.nested(P_MAPPING, pb.integer(M_ID, 1) + pb.integer(M_FILENAME, self.s("python"))
                          + pb.integer(M_HAS_FUNCTIONS, 1) + pb.integer(M_HAS_FILENAMES, 1)
                          + pb.integer(M_HAS_LINES, 1)))
        for fid, loc in locations.items():  # a location is a function, and has its id
            f = self.run.frame(fid)
            line = pb.integer(LINE_FUNCTION, loc) + pb.integer(LINE_LINE, f.line)
            z.write(pb.nested(P_LOCATION, pb.integer(L_ID, loc) + pb.integer(L_MAPPING, 1)
                              + pb.nested(L_LINE, line)))
            # Without a system name pprof takes the name as already demangled; with one
            # it would "demangle" <module> or <lambda> to nothing, like C++ templates.
            z.write(pb.nested(P_FUNCTION, pb.integer(F_ID, loc) + pb.integer(F_NAME, self.s(f.name))
                              + pb.integer(F_FILENAME, self.s(f.file)) + pb.integer(F_START_LINE, f.line)))

    def write_header(self, z: gzip.GzipFile) -> None:
        meta, end = self.run.meta, self.run.end or {}
        start, wall_ns = meta.get("start_real_ns"), end.get("wall_ns")
        z.write(pb.integer(P_TIME, start if isinstance(start, int) else 0))
        z.write(pb.integer(P_DURATION, wall_ns if isinstance(wall_ns, int) else 0))
        z.write(pb.nested(P_PERIOD_TYPE, self.value_type("wall", "nanoseconds")))
        z.write(pb.integer(P_PERIOD, 1))
        about = (f"python {meta.get('python', '?')}, engine {meta.get('engine', '?')}, "
                 f"clock {meta.get('clock', '?')}")
        z.write(pb.packed(P_COMMENT, [self.s(f"ulma {__version__} trace {self.run.path}"), self.s(about)]))
        z.write(pb.integer(P_DEFAULT_TYPE, self.s("wall")))


EXPORTER = PprofExporter
