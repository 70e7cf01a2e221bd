"""coordgap: the compounded reliability of LangGraph agents, node by node and handoff by handoff.

Usage::

    import coordgap

    app = coordgap.instrument(builder, name="research")   # a real CompiledStateGraph
    app.invoke({"question": "..."})
    print(coordgap.report(app))                             # per node, handoff, router; the gap
    coordgap.assert_reliability(app, end_to_end=0.90)       # in a unit test

Names are imported on first use (PEP 562), so ``import coordgap`` (and the pytest
plugin, which every pytest session of a project with coordgap installed loads)
costs nothing until something is used.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import faults
    from ._instrument import InstrumentedGraph, instrument, ledger, uninstrument
    from .audit import audit
    from .contracts import Capture, Contract, contract
    from .errors import ConfigurationError, ContractViolation, CoordgapError, ReliabilityError
    from .events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
    from .fleet import fleet_snapshot
    from .ledger import Ledger, LedgerSnapshot
    from .otlp import configure_otlp
    from .report import Report, report
    from .testing import LedgerScope, assert_no_regression, assert_reliability, capture_events

__all__ = [
    "Capture",
    "ConfigurationError",
    "Contract",
    "ContractViolation",
    "CoordgapError",
    "HandoffOutcome",
    "InstrumentedGraph",
    "Ledger",
    "LedgerScope",
    "LedgerSnapshot",
    "NodeOutcome",
    "ReliabilityError",
    "Report",
    "RouterOutcome",
    "RunOutcome",
    "assert_no_regression",
    "assert_reliability",
    "audit",
    "capture_events",
    "configure_otlp",
    "contract",
    "fleet_snapshot",
    "instrument",
    "ledger",
    "report",
    "uninstrument",
]

__version__ = "0.1.0"

_WHERE = {
    "Capture": ".contracts",
    "ConfigurationError": ".errors",
    "Contract": ".contracts",
    "ContractViolation": ".errors",
    "CoordgapError": ".errors",
    "HandoffOutcome": ".events",
    "InstrumentedGraph": "._instrument",
    "Ledger": ".ledger",
    "LedgerScope": ".testing",
    "LedgerSnapshot": ".ledger",
    "NodeOutcome": ".events",
    "ReliabilityError": ".errors",
    "Report": ".report",
    "RouterOutcome": ".events",
    "RunOutcome": ".events",
    "assert_no_regression": ".testing",
    "assert_reliability": ".testing",
    "audit": ".audit",
    "capture_events": ".testing",
    "configure_otlp": ".otlp",
    "contract": ".contracts",
    "fleet_snapshot": ".fleet",
    "instrument": "._instrument",
    "ledger": "._instrument",
    "report": ".report",
    "uninstrument": "._instrument",
}
_SUBMODULES = ("faults", "testing", "semconv", "events", "topology", "errors")


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where, __name__), name)
        if isinstance(value, type) or callable(value):
            try:
                # reprs, tracebacks and docs say coordgap.Report, not coordgap.report.Report
                value.__module__ = __name__
            except (AttributeError, TypeError):
                pass
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'coordgap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Keeps ``coordgap.report`` (and ``ledger``, ``audit``) the function, not the submodule.

    Importing a submodule sets it as an attribute of the package; for the three
    public functions named like their modules that would hide the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
