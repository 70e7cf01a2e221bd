"""The one check of a probability a user gives: a rate, a threshold, a reliability.

It sits at the bottom of the layers (it needs only :class:`ConfigurationError`), so the
audit, what-if, planning, fault injection and the assertions all refuse a bad value the
same way, with one message. ``coordgap.testing.checked_probability`` is this function.
"""

from __future__ import annotations

from .errors import ConfigurationError

__all__ = ["checked_probability"]


def checked_probability(
    value: object,
    what: str,
    *,
    noun: str = "a reliability threshold",
    example: str = "0.9 for 90 %",
) -> float:
    """Return ``value`` as a float when it is a probability in [0, 1]; else raise.

    The one check of a rate, threshold or reliability a user gives: a bool, a
    non-number, NaN or a value outside [0, 1] raises a ConfigurationError naming the
    argument (``what``), what it is (``noun``) and an ``example`` of a valid value.

    Example::

        >>> checked_probability(0.97, "handoffs")
        0.97
        >>> checked_probability(4, "rate", noun="a fault rate", example="0.04 for 4 %")
        Traceback (most recent call last):
        ...
        coordgap.errors.ConfigurationError: rate=4: a fault rate is a probability in [0, 1] (0.04 for 4 %).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 <= value <= 1.0  # NaN fails this too
    ):
        raise ConfigurationError(
            f"{what}={value!r}: {noun} is a probability in [0, 1] ({example})."
        )
    return float(value)
