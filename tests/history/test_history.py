"""`ulma run --history DSN` then `ulma history ...`, on the embedded chDB and on a real two-shard
ClickHouse cluster.  Ground truth: the program's own call counts (fleet_program.py) and the run's
own --json report; the history must give back exactly the report's figures, on both backends."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import run_process, ulma_command
from tests.history.conftest import need_chdb, need_server

if TYPE_CHECKING:
    from playwright.sync_api import Route

PROGRAM = Path(__file__).with_name("fleet_program.py")
WORK, OTHER = 1000, 400  # fleet_program.py's counts
FIELDS = ("calls", "total_ns", "self_ns", "cpu_ns", "overhead_ns", "wait_ns", "unmeasured_ns")
Key = tuple[str, str, int]


class Backend:
    """Two runs of the program into one history -- the baseline, then one whose `other` is slower
    -- with each run's id and --json report."""

    def __init__(self, dsn: str, tmp: Path) -> None:
        self.dsn = dsn
        self.runs: list[str] = []
        self.reports: list[dict[str, Any]] = []
        for i, args in enumerate(([], ["slow"])):
            report = tmp / f"report{i}.json"
            result = run_process(ulma_command(["run", "--history", dsn, "--objects", "--no-report", "--json",
                                               str(report), str(PROGRAM), *args]), cwd=tmp, timeout=120)
            assert result.returncode == 0, result.stderr
            said = [line for line in result.stderr.splitlines() if line.startswith("ulma: history:")]
            assert len(said) == 1, result.stderr
            self.runs.append(said[0].split(" of run ")[1].split()[0])
            self.reports.append(json.loads(report.read_text()))

    def ask(self, *args: str) -> dict[str, Any]:
        result = run_process(ulma_command(["history", *args, "--dsn", self.dsn, "--json"]), timeout=60)
        assert result.returncode == 0, result.stderr
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer


def report_figures(report: dict[str, Any]) -> dict[Key, dict[str, int]]:
    """The report's functions that did anything, by (name, file, line)."""
    out = {}
    for f in report["functions"]:
        if f["calls"] or f["total_ns"]:
            out[(f["name"], f["file"], f["line"])] = {k: f[k] or 0 for k in FIELDS}
    return out


@pytest.fixture(scope="module")
def on_chdb(chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    return Backend(f"chdb:{chdb_dir}", tmp_path_factory.mktemp("runs-chdb"))


@pytest.fixture(scope="module")
def on_cluster(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    return Backend(cluster.dsn(), tmp_path_factory.mktemp("runs-cluster"))


@pytest.fixture(scope="module")
def on_server(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """One server on its own (the cluster's second, another database): plain MergeTree tables."""
    return Backend(f"clickhouse://127.0.0.1:{cluster.ports[1]}/single",
                   tmp_path_factory.mktemp("runs-server"))


@pytest.fixture(params=["chdb", "cluster", "server"])
def backend(request: pytest.FixtureRequest) -> Backend:
    (need_chdb if request.param == "chdb" else need_server)()
    found: Backend = request.getfixturevalue(f"on_{request.param}")
    return found


def top(backend: Backend, *args: str) -> dict[Key, dict[str, int]]:
    return {(f["name"], f["file"], f["line"]): {k: f[k] for k in FIELDS}
            for f in backend.ask("top", "--limit", "0", *args)["functions"]}


def test_top_of_each_run_is_its_report_exactly(backend: Backend) -> None:
    for run, report in zip(backend.runs, backend.reports, strict=True):
        expected = report_figures(report)
        got = top(backend, "--run", run)
        assert got == expected
        by_name = {key[0]: figures["calls"] for key, figures in got.items()}
        assert by_name["work"] == WORK and by_name["other"] == OTHER


def test_top_over_everything_adds_the_runs_up(backend: Backend) -> None:
    everything = top(backend)
    for key in report_figures(backend.reports[0]):
        assert everything[key]["calls"] == sum(report_figures(r)[key]["calls"] for r in backend.reports)
    answer = backend.ask("top", "--limit", "2")
    assert len(answer["functions"]) == 2
    # the first by total time: the module and main, each holding the whole run
    assert {f["name"] for f in answer["functions"]} == {"<module>", "main"}


def test_a_time_range_before_the_runs_holds_nothing(backend: Backend) -> None:
    assert backend.ask("top", "--until", "100")["functions"] == []
    assert top(backend, "--since", "1h") == top(backend)


def test_every_backend_gives_the_same_answers(on_chdb: Backend, on_cluster: Backend,
                                              on_server: Backend) -> None:
    need_chdb()
    need_server()

    def calls(b: Backend) -> dict[Key, int]:
        return {key: figures["calls"] for key, figures in top(b).items()}

    assert calls(on_chdb) == calls(on_cluster) == calls(on_server) != {}


@pytest.mark.parametrize("step", ["second", "minute"])
def test_trend_adds_up_to_the_run(backend: Backend, step: str) -> None:
    run, report = backend.runs[0], backend.reports[0]
    (key, expected), = ((k, v) for k, v in report_figures(report).items() if k[0] == "work")
    answer = backend.ask("trend", "work", "--run", run, "--step", step)
    assert answer["places"] == [{"file": key[1], "line": key[2]}]
    points = answer["points"]
    for field in FIELDS:
        assert sum(p[field] for p in points) == expected[field], field
    if step == "second":  # about two seconds of calls: rows in more than one second, each its own
        assert len(points) >= 2
        assert [p["ts"] for p in points] == sorted({p["ts"] for p in points})
        assert all(0 < p["calls"] < WORK for p in points)


def test_compare_flags_the_function_made_slower(backend: Backend) -> None:
    slow, base = backend.runs[1], backend.runs[0]
    # `other` takes three times as long a call (+200 %); `work` the same, give or take the noise of
    # sleep on a loaded machine, well under 50 %
    answer = backend.ask("compare", slow, base, "--threshold", "50")
    rows = {f["name"]: f for f in answer["functions"]}
    assert answer["threshold_percent"] == 50, answer
    assert rows["other"]["slower"] is True
    assert rows["other"]["change"] > 1.0  # 3 ms a call against 1 ms
    # the time it gained is time waiting (it sleeps), not CPU
    delta = rows["other"]["delta_per_call_ns"]
    assert delta["wait_ns"] > 1_000_000 and abs(delta["cpu_ns"]) < delta["wait_ns"] / 4
    assert rows["work"]["slower"] is False, rows["work"]
    assert rows["work"]["calls"] == rows["work"]["baseline_calls"] == WORK
    # the other way round nothing of the program's own got slower
    back = {f["name"]: f for f in backend.ask("compare", base, slow, "--threshold", "50")["functions"]}
    assert back["other"]["slower"] is False and back["main"]["slower"] is False, back


def test_hosts_and_runs(backend: Backend) -> None:
    hosts = backend.ask("hosts")["hosts"]
    assert len(hosts) == 1 and hosts[0]["runs"] == 2 and hosts[0]["processes"] == 2
    assert hosts[0]["calls"] == sum(f["calls"] for r in backend.reports for f in report_figures(r).values())
    runs = backend.ask("runs")["runs"]
    assert [r["run_id"] for r in runs] == backend.runs
    assert all(r["command"].startswith(str(PROGRAM)) for r in runs)


def test_the_tables_print(backend: Backend) -> None:
    result = run_process(ulma_command(["history", "top", "--dsn", backend.dsn]), timeout=60)
    assert result.returncode == 0 and "work" in result.stdout and "other" in result.stdout, result.stderr




def test_callers_are_the_reports_edges(backend: Backend) -> None:
    for run, report in zip(backend.runs, backend.reports, strict=True):
        fs = report["functions"]
        for callee in ("work", "other"):
            expected = {(fs[e["caller"]]["name"], fs[e["caller"]]["line"]): (e["calls"], e["total_ns"])
                        for e in report["edges"] if fs[e["callee"]]["name"] == callee}
            got = backend.ask("callers", callee, "--run", run)["callers"]
            assert {(c["name"], c["line"]): (c["calls"], c["total_ns"]) for c in got} == expected
            assert [c["name"] for c in got] == ["main"]
            assert got[0]["calls"] == (WORK if callee == "work" else OTHER)


def test_object_counts_per_type_are_each_runs_report_and_the_programs(backend: Backend) -> None:
    """--objects: the history's counts per type over a run are its report's exactly, and the
    program's own Orders (WORK made, a tenth kept)."""
    for run, report in zip(backend.runs, backend.reports, strict=True):
        got = {t["name"]: t for t in backend.ask("types", "--run", run, "--limit", "0")["types"]}
        want = {t["name"]: t for t in report["types"] if t["created"] or t["freed"] or t["freed_untracked"]}
        assert got.keys() == want.keys()
        for name, t in want.items():
            g = got[name]
            figures = (g["created"], g["freed"], g["freed_untracked"], g["bytes"])
            assert figures == (t["created"], t["freed"], t["freed_untracked"], t["bytes"] or 0), name
        order = got["Order"]
        assert (order["created"], order["live"]) == (WORK, WORK // 10), order


def test_the_page_draws_a_trend_split_four_ways_and_a_bar_per_top_function(
        on_chdb: Backend, tmp_path: Path) -> None:
    """`--html FILE` beside --json: opened offline in chromium, the trend's page stacks the four
    parts per step and lists every point; top's page has a bar per function, in the JSON's order,
    each part as wide as its share of the function's time."""
    from tests.browser import chromium

    run = on_chdb.runs[0]
    pages = {what: tmp_path / f"{what}.html" for what in ("trend", "top")}
    trend = on_chdb.ask("trend", "work", "--run", run, "--html", str(pages["trend"]))
    top_answer = on_chdb.ask("top", "--run", run, "--limit", "5", "--html", str(pages["top"]))
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in pages.values())
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        fetched: list[str] = []

        def refuse(route: Route) -> None:
            fetched.append(route.request.url)
            route.abort()

        context.route(re.compile(r"^(?!file:).*"), refuse)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(pages["trend"].as_uri())
        parts = page.eval_on_selector_all("#chart-svg path.part", "ps => ps.map(p => p.dataset.part)")
        assert parts == ["cpu_ns", "overhead_ns", "wait_ns", "unmeasured_ns"], parts
        assert page.locator("#table tbody tr").count() == len(trend["points"]) >= 2
        page.goto(pages["top"].as_uri())
        names = page.eval_on_selector_all("#chart-svg g.bar", "gs => gs.map(g => g.dataset.name)")
        assert names == [f["name"] for f in top_answer["functions"]], names
        first = top_answer["functions"][0]
        widths = page.eval_on_selector_all("#chart-svg g.bar:first-of-type rect.part",
                                           "rs => rs.map(r => [r.dataset.part, r.width.baseVal.value])")
        whole = sum(w for _, w in widths)
        parts_ns = sum(first[p] for p, _ in widths)
        for part, width in widths:
            assert abs(width - whole * first[part] / parts_ns) <= 1.0, (part, widths, first)
        context.close()
    assert errors == [] and fetched == []
