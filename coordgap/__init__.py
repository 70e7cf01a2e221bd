"""coordgap: the compounded reliability of LangGraph agents, node by node and handoff by handoff."""


from ._instrument import InstrumentedGraph, instrument, ledger, uninstrument
from ._intercept import Capture
from .contracts import Contract, contract
from .errors import ConfigurationError, ContractViolation, CoordgapError, ReliabilityError
from .events import HandoffOutcome, NodeOutcome, RouterOutcome, RunOutcome
from .ledger import Ledger, LedgerSnapshot

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
    "RouterOutcome",
    "RunOutcome",
    "contract",
    "instrument",
    "ledger",
    "uninstrument",
]

__version__ = "0.1.0"
