"""coordgap: the compounded reliability of LangGraph agents, node by node and handoff by handoff.

Usage::

    import coordgap

    app = coordgap.instrument(builder, name="research")   # a real CompiledStateGraph
    app.invoke({"question": "..."})
    print(coordgap.report(app))                             # per node, handoff, router; the gap
    coordgap.assert_reliability(app, end_to_end=0.90)       # in a unit test
"""

from . import faults
from ._instrument import InstrumentedGraph, instrument, ledger, uninstrument
from ._intercept import Capture
from .audit import audit
from .contracts import Contract, contract
from .errors import ConfigurationError, ContractViolation, CoordgapError, ReliabilityError
from .events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from .fleet import fleet_snapshot
from .ledger import Ledger, LedgerSnapshot
from .otlp import configure_otlp
from .report import Report, report
from .testing import assert_no_regression, assert_reliability, capture_events

__all__ = [
    "Capture",
    "ConfigurationError",
    "Contract",
    "ContractViolation",
    "CoordgapError",
    "HandoffOutcome",
    "InstrumentedGraph",
    "Ledger",
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

# Reprs, tracebacks and docs say coordgap.Report, not coordgap.report.Report.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        try:
            _obj.__module__ = "coordgap"
        except (AttributeError, TypeError):
            pass
del _name, _obj
