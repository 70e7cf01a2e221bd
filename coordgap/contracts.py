"""Contracts: what the state must satisfy at a handoff or a node boundary.

A contract is a pydantic model, a ``TypedDict`` (validated through pydantic's
``TypeAdapter``), or any callable that raises or returns False. It is compiled
once, at instrument() time, into a checker that reports the failing field
paths and error types, never the values::

    class Retrieved(BaseModel):
        docs: list[str]

    @coordgap.contract(requires=Question, ensures=Retrieved)
    def retrieve(state): ...

    app = coordgap.instrument(
        builder,
        contracts={"analyze": coordgap.Contract(requires=Retrieved)},
        handoffs={("retrieve", "analyze"): Retrieved},
    )
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, get_type_hints

import pydantic
from pydantic import BaseModel, TypeAdapter

# typing's own is_typeddict misses typing_extensions.TypedDict (what pydantic asks for
# before Python 3.12); typing_extensions is pydantic's dependency, so always here
from typing_extensions import is_typeddict

from .errors import ConfigurationError

__all__ = ["Capture", "Contract", "contract"]

F = TypeVar("F", bound=Callable[..., Any])

ContractSpec: TypeAlias = type[Any] | Callable[[Any], Any]
"""What a contract may be: a pydantic model, a ``TypedDict``, a dataclass, or a callable
that raises or returns False."""

_ATTRIBUTE = "__coordgap_contract__"


@dataclass
class Capture:
    """Opt-in capture of state values on failures (development only).

    Args:
        max_chars: the captured text is cut to this length.
        redact: called with the value before it is rendered; return what may be recorded.

    Example::

        coordgap.instrument(builder, capture_values=coordgap.Capture(max_chars=200))
    """

    max_chars: int = 1024
    redact: Callable[[Any], Any] | None = None

    def render(self, value: Any) -> str:
        """Return the text recorded for a value: redacted, ``repr``, cut to ``max_chars``."""
        if self.redact is not None:
            value = self.redact(value)
        text = repr(value)
        return text if len(text) <= self.max_chars else text[: self.max_chars] + "..."


@dataclass(frozen=True, slots=True)
class Contract:
    """What a node requires of the state it receives and ensures of the update it returns.

    Args:
        requires: checked on the state (or ``Send`` payload) the node receives.
        ensures: checked on the update the node returns (``Command.update`` for Commands).
        name: the name reported on violations; defaults to the model's or callable's name.

    Example::

        coordgap.Contract(requires=Retrieved, ensures=Analysis)
    """

    requires: Any = None
    ensures: Any = None
    name: str | None = None


def contract(
    *, requires: Any = None, ensures: Any = None, name: str | None = None
) -> Callable[[F], F]:
    """Return a decorator that declares a node function's contract (the function is unchanged).

    Example::

        @coordgap.contract(requires=Question, ensures=Retrieved)
        def retrieve(state: State) -> dict: ...
    """
    declared = Contract(requires=requires, ensures=ensures, name=name)
    # Fail at decoration time, where the traceback points at the user's code.
    for role, spec in (("requires", requires), ("ensures", ensures)):
        if spec is not None:
            compile_check(spec, role=role, name=name)

    def decorate(fn: F) -> F:
        try:
            setattr(fn, _ATTRIBUTE, declared)
        except (AttributeError, TypeError) as exc:
            raise ConfigurationError(
                f"@coordgap.contract cannot annotate {fn!r}: it takes no attributes. "
                "Pass the contract to instrument(contracts={node_name: Contract(...)}) instead."
            ) from exc
        return fn

    return decorate


def declared_contract(runnable: Any) -> Contract | None:
    """Return the contract declared with @contract on a node's function, if any."""
    for candidate in (runnable, getattr(runnable, "func", None), getattr(runnable, "afunc", None)):
        found = getattr(candidate, _ATTRIBUTE, None)
        if isinstance(found, Contract):
            return found
    return None


@dataclass(frozen=True, slots=True)
class Violation:
    """A failed check: the contract's name, field paths and error types (no values)."""

    contract: str
    fields: tuple[str, ...]
    error_types: tuple[str, ...]
    cause: BaseException | None = None


class Check:
    """A compiled contract: call it with a value; it returns None or a :class:`Violation`."""

    __slots__ = ("name", "spec", "validate")

    def __init__(self, spec: Any, name: str, validate: Callable[[Any], Violation | None]) -> None:
        self.spec = spec
        self.name = name
        self.validate = validate
        """The check itself; the probes call it directly (one call less than ``check(value)``)."""

    def __call__(self, value: Any) -> Violation | None:
        return self.validate(value)

    def __repr__(self) -> str:
        return f"<coordgap contract {self.name!r}>"


def compile_check(spec: Any, *, role: str, name: str | None = None) -> Check:
    """Compile a contract spec (model, TypedDict or callable) into a :class:`Check`."""
    if isinstance(spec, Check):
        return spec
    if isinstance(spec, Contract):
        raise ConfigurationError(
            f"{role}= takes a model or a callable, not a Contract; "
            "pass Contract(...) as the value of contracts={node: ...} instead."
        )
    if inspect.isclass(spec) and issubclass(spec, BaseModel):
        return _model_check(spec, name or spec.__name__)
    if is_typeddict(spec):
        return _adapter_check(_typeddict_adapter(spec), name or spec.__name__)
    if inspect.isclass(spec) and _is_dataclass_type(spec):
        return _adapter_check(TypeAdapter(spec), name or spec.__name__)
    if callable(spec) and not inspect.isclass(spec):
        label = name or getattr(spec, "__qualname__", None) or type(spec).__name__
        return _callable_check(spec, label)
    raise ConfigurationError(
        f"{role}={spec!r} is not a contract: pass a pydantic model, a TypedDict, "
        "a dataclass, or a callable that raises or returns False."
    )


def _typeddict_adapter(spec: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(spec)
    except pydantic.PydanticUserError:
        # pydantic rejects typing.TypedDict before Python 3.12, the kind LangGraph states use;
        # the same fields as a model validate the same way.
        hints = get_type_hints(spec, include_extras=True)
        required = getattr(spec, "__required_keys__", frozenset(hints))
        fields: dict[str, Any] = {
            key: (hint, ... if key in required else None) for key, hint in hints.items()
        }
        model = pydantic.create_model(
            spec.__name__, __config__=pydantic.ConfigDict(extra="allow"), **fields
        )
        return TypeAdapter(model)


def _is_dataclass_type(spec: type) -> bool:
    import dataclasses

    return dataclasses.is_dataclass(spec)


def _fields_of(error: pydantic.ValidationError) -> tuple[tuple[str, ...], tuple[str, ...]]:
    fields: list[str] = []
    kinds: list[str] = []
    # include_input=False keeps the state's values out of everything we derive
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        fields.append(".".join(str(part) for part in item.get("loc", ())))
        kinds.append(str(item.get("type", "value_error")))
    return tuple(fields), tuple(kinds)


def _as_mapping(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return dict(value)
    return value


def _model_check(model: type[BaseModel], name: str) -> Check:
    def validate(value: Any) -> Violation | None:
        if type(value) is model:
            return None
        try:
            # the validator model_validate() calls, without its Python wrapper (a hot path);
            # looked up per call: pydantic replaces it when the model is rebuilt
            model.__pydantic_validator__.validate_python(
                value if type(value) is dict else _as_mapping(value), from_attributes=True
            )
        except pydantic.ValidationError as exc:
            fields, kinds = _fields_of(exc)
            return Violation(name, fields, kinds, exc)
        return None

    return Check(model, name, validate)


def _adapter_check(adapter: TypeAdapter[Any], name: str) -> Check:
    def validate(value: Any) -> Violation | None:
        try:
            adapter.validate_python(value if type(value) is dict else _as_mapping(value))
        except pydantic.ValidationError as exc:
            fields, kinds = _fields_of(exc)
            return Violation(name, fields, kinds, exc)
        return None

    return Check(adapter, name, validate)


def _callable_check(fn: Callable[[Any], Any], name: str) -> Check:
    def validate(value: Any) -> Violation | None:
        try:
            result = fn(value)
        except pydantic.ValidationError as exc:
            fields, kinds = _fields_of(exc)
            return Violation(name, fields, kinds, exc)
        except Exception as exc:  # the callable's way of saying "broken"
            return Violation(name, ("",), (type(exc).__name__,), exc)
        if result is False:
            return Violation(name, ("",), ("returned_false",), None)
        return None

    return Check(fn, name, validate)
