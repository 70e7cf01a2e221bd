"""Reading the names users give components: ``analyze``, ``a -> b``, ``("a", "b")``.

One spelling for a handoff everywhere (``coordgap.topology.handoff_name``: ``a -> b``, the
unknown target ``__unknown__``). The arrow ``→`` that what-if used to print is still read,
with a DeprecationWarning.
"""

from __future__ import annotations

import warnings

from .topology import handoff_name, parse_handoff

__all__ = ["handoff_pair", "path_of"]

_OLD_ARROW = "\u2192"


def _modern(text: str, stacklevel: int) -> str:
    if _OLD_ARROW not in text:
        return text
    fixed = text.replace(_OLD_ARROW, "->")
    warnings.warn(
        f"{text!r}: name handoffs {handoff_name('a', 'b')!r} "
        f"(e.g. {' -> '.join(p.strip() for p in fixed.split('->'))!r}); "
        f"the arrow {_OLD_ARROW!r} is deprecated",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return fixed


def handoff_pair(ref: object, *, stacklevel: int = 3) -> tuple[str, str] | None:
    """Return (source, target) when ``ref`` names a handoff, else None.

    Accepts ``"a -> b"``, ``"a->b"``, ``("a", "b")``; ``"a → b"`` with a DeprecationWarning.

    Example::

        >>> handoff_pair("supervisor -> __unknown__")
        ('supervisor', '__unknown__')
    """
    if isinstance(ref, tuple) and len(ref) == 2 and all(isinstance(x, str) for x in ref):
        return (ref[0], ref[1])
    if not isinstance(ref, str):
        return None
    return parse_handoff(_modern(ref, stacklevel + 1))


def path_of(text: str | object, *, stacklevel: int = 3) -> list[str]:
    """Return the nodes of a path ``"a -> c -> b"`` (or a list of names) in order.

    Example::

        >>> path_of("retrieve -> cache -> analyze")
        ['retrieve', 'cache', 'analyze']
    """
    if isinstance(text, str):
        return [p.strip() for p in _modern(text, stacklevel + 1).split("->")]
    if isinstance(text, list | tuple):
        return [str(p) for p in text]
    return [str(text)]
