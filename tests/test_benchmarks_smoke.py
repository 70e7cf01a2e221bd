"""The benchmarks run end to end and print every row (no timing assertions)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # scaling.py imports overhead.py as a sibling
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    return _load("overhead")


@pytest.fixture(scope="module")
def scaling() -> ModuleType:
    return _load("scaling")


def test_overhead_table_has_every_scenario_and_variant(
    overhead: ModuleType, tmp_path: Path
) -> None:
    tiny = overhead.Profile(
        "tiny", rounds=1, per_round=dict.fromkeys(overhead.SCENARIOS, 2), warmup=1
    )
    tables = overhead.run_benchmark(tiny)
    expected = [
        overhead.BARE,
        *overhead.COORDGAP_VARIANTS,
        overhead.NAIVE,
        *overhead.installed_peers(),
    ]
    assert [t.scenario for t in tables] == list(overhead.SCENARIOS)
    for table in tables:
        assert [r.variant for r in table.rows] == expected
        assert table.row(overhead.BARE).ratio == 1.0
        assert all(r.invokes == 2 and r.median_us > 0 and r.bare_us > 0 for r in table.rows)
        # coordgap's rows are paired with the bare graph timed in their own process
        for variant in overhead.COORDGAP_VARIANTS:
            row = table.row(variant)
            assert row.ratio == pytest.approx(row.median_us / row.bare_us)
        assert table.row(overhead.NAIVE).spans_per_invoke >= 1
        # spans are exported only by the modes and peers that make them on the happy path
        assert table.row(overhead.BARE).spans_per_invoke == 0
        assert table.row(overhead.COORDGAP_OFF).spans_per_invoke == 0
        assert table.row(overhead.COORDGAP_FAILURES).spans_per_invoke == 0
        assert table.row(overhead.COORDGAP_ALL).spans_per_invoke >= 1
        text = overhead.format_table(table)
        for variant in expected:
            assert variant in text
        markdown = overhead.format_table(table, markdown=True)
        assert markdown.count("\n| ") == len(expected) + 1  # header and one line per row
    assert overhead.targets_summary(tables)
    saved = tmp_path / "run.json"
    env = overhead.environment()
    overhead.save_run(saved, tables, env)
    assert overhead.load_run(saved) == (tables, env)


def test_docs_page_is_generated_with_machine_and_command(
    overhead: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = overhead.Row(overhead.BARE, 10.0, 12.0, 10.0, 1.0, 0.0, 0.0, 5)
    table = overhead.Table("linear", overhead.SCENARIOS["linear"], [row])
    monkeypatch.setattr(overhead, "DOCS", tmp_path / "performance.md")
    path = overhead.write_docs([table], overhead.QUICK, "the command")
    text = path.read_text()
    assert "logical cores" in text and "langgraph" in text and "`the command`" in text
    assert "| bare |" in text


def test_scaling_reports_every_concurrency_and_a_flat_ledger(scaling: ModuleType) -> None:
    tiny = scaling.ScalingProfile(
        "tiny", invokes_per_thread_total=4, rounds=1, async_batches=1, ledger_runs=2_000
    )
    rows = scaling.measure_throughput(tiny, threads=(1, 2), concurrent=4)
    assert [r.label for r in rows] == ["1 thread", "2 threads", "4 concurrent ainvoke"]
    assert all(r.bare > 0 and r.coordgap > 0 for r in rows)
    memory = scaling.measure_ledger_memory(2_000)
    assert [n for n, _ in memory] == [1_000, 2_000]
    assert "2,000" in scaling.format_memory(memory)
