"""coordgap: the compounded reliability of LangGraph agents, node by node and handoff by handoff.

Usage::

    import coordgap

    app = coordgap.instrument(builder, name="research")   # a real CompiledStateGraph
    app.invoke({"question": "..."})
    print(coordgap.report(app))                             # per node, handoff, router; the gap
    coordgap.assert_reliability(app, end_to_end=0.90)       # in a unit test

Everything public is imported from here; the modules whose names start with ``_`` are
the implementation. Names are imported on first use (PEP 562), so ``import coordgap``
(and the pytest plugin, which every pytest session of a project with coordgap installed
loads) costs nothing until something is used.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import faults
    from ._audit import audit
    from ._coverage import Coverage, coverage
    from ._instrument import InstrumentedGraph, instrument, ledger, uninstrument
    from ._ledger import (
        HandoffStats,
        Ledger,
        LedgerSnapshot,
        NodeStats,
        RouterStats,
        RunStats,
    )
    from ._plan import Plan, recommend
    from ._report import (
        Change,
        Comparison,
        ComponentReport,
        EndToEnd,
        FaultDetection,
        Report,
        report,
    )
    from ._stats import Estimate, wilson_interval
    from .contracts import Capture, Contract, contract
    from .errors import ConfigurationError, ContractViolation, CoordgapError, ReliabilityError
    from .events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
    from .fleet import fleet_snapshot
    from .otlp import configure_otlp
    from .testing import LedgerScope, assert_no_regression, assert_reliability, capture_events
    from .whatif import WhatIf, what_if

__all__ = [
    "Capture",
    "Change",
    "Comparison",
    "ComponentReport",
    "ConfigurationError",
    "Contract",
    "ContractViolation",
    "CoordgapError",
    "Coverage",
    "EndToEnd",
    "Estimate",
    "FaultDetection",
    "HandoffOutcome",
    "HandoffStats",
    "InstrumentedGraph",
    "Ledger",
    "LedgerScope",
    "LedgerSnapshot",
    "NodeOutcome",
    "NodeStats",
    "Plan",
    "ReliabilityError",
    "Report",
    "RouterOutcome",
    "RouterStats",
    "RunOutcome",
    "RunStats",
    "WhatIf",
    "assert_no_regression",
    "assert_reliability",
    "audit",
    "capture_events",
    "configure_otlp",
    "contract",
    "coverage",
    "fleet_snapshot",
    "instrument",
    "ledger",
    "recommend",
    "report",
    "uninstrument",
    "what_if",
    "wilson_interval",
]

__version__ = "0.1.0"

_WHERE = {
    "Capture": ".contracts",
    "Change": "._report",
    "Comparison": "._report",
    "ComponentReport": "._report",
    "ConfigurationError": ".errors",
    "Contract": ".contracts",
    "ContractViolation": ".errors",
    "CoordgapError": ".errors",
    "Coverage": "._coverage",
    "EndToEnd": "._report",
    "Estimate": "._stats",
    "FaultDetection": "._report",
    "HandoffOutcome": ".events",
    "HandoffStats": "._ledger",
    "InstrumentedGraph": "._instrument",
    "Ledger": "._ledger",
    "LedgerScope": ".testing",
    "LedgerSnapshot": "._ledger",
    "NodeOutcome": ".events",
    "NodeStats": "._ledger",
    "Plan": "._plan",
    "ReliabilityError": ".errors",
    "Report": "._report",
    "RouterOutcome": ".events",
    "RouterStats": "._ledger",
    "RunOutcome": ".events",
    "RunStats": "._ledger",
    "WhatIf": ".whatif",
    "assert_no_regression": ".testing",
    "assert_reliability": ".testing",
    "audit": "._audit",
    "capture_events": ".testing",
    "configure_otlp": ".otlp",
    "contract": ".contracts",
    "coverage": "._coverage",
    "fleet_snapshot": ".fleet",
    "instrument": "._instrument",
    "ledger": "._instrument",
    "recommend": "._plan",
    "report": "._report",
    "uninstrument": "._instrument",
    "what_if": ".whatif",
    "wilson_interval": "._stats",
}
_SUBMODULES = (
    "contracts",
    "errors",
    "events",
    "faults",
    "fleet",
    "otlp",
    "render",
    "semconv",
    "testing",
    "topology",
    "whatif",
)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where, __name__), name)
        if isinstance(value, type) or callable(value):
            try:
                # reprs, tracebacks and docs say coordgap.Report, not coordgap._report.Report
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


class _MovedModule(types.ModuleType):
    """A module path of coordgap 0.1 (``coordgap.report`` and three others): its names now
    come from ``coordgap`` itself. Importing from it still works, with a DeprecationWarning.

    It is registered in ``sys.modules`` (nothing is imported until a name is read), so
    ``from coordgap.report import Report`` finds it, and ``coordgap.report`` stays the
    function: the package never has a submodule of that name to shadow it.
    """

    def __init__(self, name: str, implementation: str) -> None:
        super().__init__(f"{__name__}.{name}")
        self._implementation = implementation

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        warnings.warn(
            f"importing from {self.__name__} is deprecated (removed in coordgap 0.3): "
            f"import {attr} from coordgap (`from coordgap import {attr}`).",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(self._implementation, __name__), attr)


for _old, _new in (
    ("audit", "._audit"),
    ("coverage", "._coverage"),
    ("ledger", "._ledger"),
    ("report", "._report"),
):
    sys.modules.setdefault(f"{__name__}.{_old}", _MovedModule(_old, _new))
del _old, _new
