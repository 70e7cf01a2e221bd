"""Exceptions raised by coordgap.

The tree::

    CoordgapError
    ├── ConfigurationError   (also a ValueError)   bad arguments, found at instrument() time
    ├── ContractViolation    (also a ValueError)   a broken contract, only with on_violation="raise"
    └── ReliabilityError     (also an AssertionError)  a reliability threshold was not met

Each one is also a builtin, so ``except ValueError`` and pytest's assertion
handling keep working for code that does not know about coordgap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._report import Comparison
    from .testing import ThresholdCheck

__all__ = ["ConfigurationError", "ContractViolation", "CoordgapError", "ReliabilityError"]


class CoordgapError(Exception):
    """Root of every exception coordgap raises on purpose."""


class ConfigurationError(CoordgapError, ValueError):
    """An argument to coordgap is wrong; the message names the problem and the fix."""


class ContractViolation(CoordgapError, ValueError):
    """State broke a contract at a handoff or a node boundary (``on_violation="raise"``).

    Attributes:
        contract: the contract's name.
        where: ``"requires"``, ``"ensures"`` or ``"handoff"``.
        node: the node whose boundary was checked.
        source: the handoff's source (``None`` for ``ensures``).
        fields: the failing field paths, e.g. ``("docs", "docs.0.url")``.
        error_types: the validation error types, one per field (``"missing"``, ...).

    The message never contains state values; the validation error with its
    inputs is kept as ``__cause__`` for local debugging only.
    """

    def __init__(
        self,
        *,
        contract: str,
        where: str,
        node: str,
        source: str | None,
        fields: Sequence[str],
        error_types: Sequence[str],
    ) -> None:
        self.contract = contract
        self.where = where
        self.node = node
        self.source = source
        self.fields = tuple(fields)
        self.error_types = tuple(error_types)
        if where == "ensures":
            place = f"the update returned by node {node!r}"
        elif source is None:
            place = f"the state received by node {node!r}"
        else:
            place = f"the handoff {source!r} -> {node!r}"
        broken = ", ".join(
            f"{field or '<root>'} ({kind})"
            for field, kind in zip(self.fields, self.error_types, strict=False)
        )
        super().__init__(
            f"{place} broke contract {contract!r} ({where}): {broken or 'check returned False'}"
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (
            _rebuild_violation,
            (self.contract, self.where, self.node, self.source, self.fields, self.error_types),
        )


def _rebuild_violation(
    contract: str,
    where: str,
    node: str,
    source: str | None,
    fields: Sequence[str],
    error_types: Sequence[str],
) -> ContractViolation:
    return ContractViolation(
        contract=contract,
        where=where,
        node=node,
        source=source,
        fields=fields,
        error_types=error_types,
    )


class ReliabilityError(CoordgapError, AssertionError):
    """A reliability assertion failed; the message is the report with the culprits marked.

    Attributes:
        checks: every :class:`~coordgap.testing.ThresholdCheck` made by
            ``assert_reliability`` (empty for a regression).
        problems: what kept the check from deciding (too few runs), one line each.
        weakest: ``(component, gain)`` of the components that cost the most end to
            end (the predicted gain if each were perfect), largest first; filled
            when an end-to-end threshold failed, so the failure says where to look.
        comparison: the :class:`~coordgap.report.Comparison` with the baseline
            (``assert_no_regression``), else None.

    Example::

        try:
            coordgap.assert_reliability(app, end_to_end=0.9)
        except coordgap.ReliabilityError as exc:
            exc.weakest      # (("synthesize", 0.041), ("retrieve -> analyze", 0.027))
    """

    def __init__(
        self,
        message: str,
        *,
        checks: Sequence[ThresholdCheck] = (),
        problems: Sequence[str] = (),
        weakest: Sequence[tuple[str, float]] = (),
        comparison: Comparison | None = None,
    ) -> None:
        super().__init__(message)
        self.checks: tuple[ThresholdCheck, ...] = tuple(checks)
        self.problems: tuple[str, ...] = tuple(problems)
        self.weakest: tuple[tuple[str, float], ...] = tuple(weakest)
        self.comparison: Comparison | None = comparison

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (
            _rebuild_reliability,
            (str(self), self.checks, self.problems, self.weakest, self.comparison),
        )


def _rebuild_reliability(
    message: str,
    checks: Sequence[Any],
    problems: Sequence[str],
    weakest: Sequence[tuple[str, float]],
    comparison: Any,
) -> ReliabilityError:
    return ReliabilityError(
        message, checks=checks, problems=problems, weakest=weakest, comparison=comparison
    )
