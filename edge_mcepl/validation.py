"""Validation of user-written structures (YAML files, CLI overrides, JSON messages): one library, one message style.

Every structure the project reads from outside — the lab config (:mod:`~edge_mcepl.config`), device
profiles (:mod:`~edge_mcepl.profiles`), the MQTT lab envelope and its settings
(:mod:`~edge_mcepl.devicelab.schema`), the credentials file (:mod:`~edge_mcepl.comm.broker.credentials`),
run directories (:mod:`~edge_mcepl.run_dir`) and checkpoint metadata (:mod:`~edge_mcepl.checkpoint`) —
is a pydantic v2 model derived from :class:`StrictModel`, with its constraints declared on the fields
themselves (``Field(ge=..., le=...)``, ``Literal[...]``, ``pattern=...``), and the writers dump the
same models. :func:`validate` (Python data, e.g. parsed YAML) and :func:`validate_json` (a JSON
document) are the one place that turns pydantic's :class:`~pydantic.ValidationError` into the
project's one-line :class:`~edge_mcepl.errors.UserError`, so every reader reports a mistake the same way::

    lab.yaml: agents: expected an int, got 2.5
    lab.yaml: topology.p: 1.5 is outside [0, 1]
    lab.yaml: unknown key 'algorithm.learning_rate' (known: aggregation_amplitude, aggregation_tensor, ...)
    rpi4.yaml: missing key 'hardware.uplink_mbps'

pydantic rather than msgspec: the bounds and choices sit next to the fields they constrain, strict
mode refuses ``2.5``/``"four"``/``true`` for an int out of the box, and every error carries the
field's location, which is what the one-line messages are built from (both have aarch64 wheels).

How a message is worded (only the first error is reported, an unknown key before anything else —
a misspelt key is the likely cause of a "missing" one):

- a wrong type or choice: ``{source}: {field}: expected {what}, got {value!r}``, where ``what``
  comes from the field's type (``an int``, ``a number``, ``one of 'a', 'b'``, ``an int or null``)
  or, when the field has one, from its ``Field(description=...)`` — so a description must read as
  what the field expects (``"a name of 1–64 letters, ..."``);
- a bound: ``{source}: {field}: {value} is outside [lo, hi]`` with the field's declared bounds;
- a model's own check (a ``field_validator``/``model_validator`` raising ``ValueError``): its
  message, prefixed with the source and the field it was raised for;
- the whole document of the wrong shape: ``{source}: must be a mapping, got [...]``;
- a JSON document that does not parse (:func:`validate_json`): ``{source}: not JSON ({why})``;
- a document of another format (its model's ``format`` is a one-value ``Literal``):
  ``{source}: format 'x/2', this edge-mcepl reads x/1``, before anything else.

A mapping field (``dict[K, V]``) names its entries like fields (``files.topology.file.text``); a
key outside a ``Literal`` key type is an unknown key, listed with the known ones.

A union field (``"auto"`` or a ratio, a ratio or a list of ratios) reports the member the value
got furthest into — a list with one bad item names that item (``retention.conv[1]``) — and when
no member took the value's type it lists them all (``expected 'auto' or a number``).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, TypeVar, Union

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from .errors import UserError

M = TypeVar("M", bound=BaseModel)
_S = TypeVar("_S", bound="StrictModel")
_UNKNOWN_KEY_ERRORS = {"extra_forbidden", "invalid_key"}  # invalid_key: not a string
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_LENGTH_ERRORS = {"too_short", "too_long", "string_too_short", "string_too_long"}
_MAX_SHOWN = 60  # characters of a value's repr in a message: a long list must not flood the line
_KEY = "[key]"  # the location part pydantic appends when a mapping's key, not its value, was refused

# Field types shared by several structures (the lab envelope, run directories, checkpoints, credentials).
Fingerprint = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="32 hex digits (a weights fingerprint)")]
AgentId = Annotated[int, Field(ge=0)]


class StrictModel(BaseModel):
    """The project's settings for a validated structure: no unknown keys, no type coercion, immutable.

    ``strict``: an int field refuses ``2.5``, ``"4"`` and ``true``, a bool refuses ``1``, a float
    takes ints (and stores floats). ``allow_inf_nan=False``: a NaN step size is a typo, not a value.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    def replace(self: _S, **changes: Any) -> _S:
        """A copy with ``changes``, validated like a new instance (``model_copy(update=...)`` is not)."""
        return type(self).model_validate({**dict(self), **changes})


def read_yaml(path: Path, what: str, hint: str = "") -> Any:
    """A YAML file's data for :func:`validate`; unreadable or invalid YAML is one line naming the file."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror}){hint}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None


def validate(model: type[M], raw: Any, source: str) -> M:
    """``raw`` (plain data: mappings, lists, scalars) as a ``model``, or a one-line UserError naming ``source``."""
    _check_format(model, raw, source)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise user_error(exc, model, source) from None


def validate_json(model: type[M], data: str | bytes, source: str) -> M:
    """A JSON document as a ``model``, read with JSON's own types, or a one-line UserError naming ``source``.

    For a JSON file or message rather than :func:`validate` on its parsed form: an object's keys
    are strings, so an int-keyed mapping (agent ids) takes ``"0"`` there, and an array fills a
    tuple — both still refused in Python data, where they would be mistakes. (The document is
    parsed twice, once to check its format: pydantic reads JSON's types only from the text.)
    """
    try:
        raw = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise UserError(f"{source}: not JSON ({exc})") from None
    _check_format(model, raw, source)
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise user_error(exc, model, source) from None


def _check_format(model: type[BaseModel], raw: Any, source: str) -> None:
    """Refuse a document of another format before looking at its fields, when ``model`` declares its own.

    A model whose ``format`` field is a one-value ``Literal`` (``"edge-mcepl-run/1"``) names its
    schema and version; the fields of another format belong to another schema, so an unknown or a
    missing key would be a misleading message.
    """
    info = model.model_fields.get("format")
    annotation = info.annotation if info is not None else None
    expected = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()
    if len(expected) == 1 and isinstance(raw, Mapping) and raw.get("format") != expected[0]:
        raise UserError(f"{source}: format {raw.get('format')!r}, this edge-mcepl reads {expected[0]}")


def set_dotted(mapping: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``mapping`` with ``dotted`` (``"algorithm.lr"``) set to ``value``; the caller's mapping is untouched.

    Missing or null sections on the way become new mappings; a section that is something else
    (``data: 3``) raises ValueError, since the value cannot be set inside it.
    """
    head, _, rest = dotted.partition(".")
    copy = dict(mapping)
    if not rest:
        copy[head] = value
        return copy
    section = copy.get(head)
    if section is not None and not isinstance(section, Mapping):
        raise ValueError(f"{head}: expected a mapping to set {dotted!r} in, got {_shown(section, Any)}")
    copy[head] = set_dotted(section or {}, rest, value)
    return copy


def user_error(exc: ValidationError, model: type[BaseModel], source: str) -> UserError:
    """The first of ``exc``'s errors as one line: ``{source}: {field}: {what was wrong}``."""
    error = _first_error(exc.errors(), model)
    spot = _locate(model, error["loc"])
    kind, value = error["type"], error["input"]
    if _is_unknown_key(error):
        known = typing.get_args(_strip(spot.annotation)) if spot.is_key else sorted(spot.parent.model_fields)
        return UserError(f"{source}: unknown key '{spot.dotted}' (known: {', '.join(known)})")
    if kind == "missing":
        return UserError(f"{source}: missing key '{spot.dotted}'")
    if kind in _RANGE_ERRORS:
        detail = f"{_shown(value, spot.annotation)} is outside {_interval(spot.annotation)}"
    elif kind in _LENGTH_ERRORS:
        detail = f"expected {_length(error)}, got {_shown(value, Any)}"
    elif kind in ("value_error", "assertion_error"):
        detail = str(error.get("ctx", {}).get("error", error["msg"]))
    elif not spot.dotted:
        return UserError(f"{source}: must be {_expected(spot, error)}, got {_shown(value, Any)}")
    else:
        detail = f"expected {_expected(spot, error)}, got {_shown(value, spot.annotation)}"
    return UserError(f"{source}: {spot.dotted}: {detail}" if spot.dotted else f"{source}: {detail}")


# ---------------------------------------------------------------------------------------------
# Which error, and where it points


@dataclass(frozen=True)
class _Spot:
    """Where an error's location points in the model: the dotted name and the type found there."""

    dotted: str  # "retention.conv[1]"; "" for the whole document
    field: str  # the innermost model field ("retention.conv"): a union's member errors share it
    field_loc: tuple  # the part of the error location that leads to that field
    annotation: Any  # the type at that place (a union member when the location picked one)
    parent: type[BaseModel]  # the model holding that field (or the unknown key)
    is_key: bool = False  # the error is about a mapping's key (``annotation`` is the key type), not a value


def _first_error(errors: list[ErrorDetails], model: type[BaseModel]) -> ErrorDetails:
    """An unknown key first; else the first error, or, for a union field, its most telling member error."""
    unknown = [e for e in errors if _is_unknown_key(e)]
    if unknown:
        return unknown[0]
    spot = _locate(model, errors[0]["loc"])
    members = [e for e in errors if _locate(model, e["loc"]).field == spot.field]
    if len(members) == 1:
        return members[0]
    # The member the value got furthest into, and one whose type it had (a bound, not a type error);
    # when every member refused the value's type, the error is about the whole field: "expected A or B".
    best = max(members, key=lambda e: (len(e["loc"]), not _is_type_error(e)))
    if _is_type_error(best) and all(len(e["loc"]) == len(best["loc"]) for e in members):
        return {**best, "loc": best["loc"][: len(_locate(model, best["loc"]).field_loc)]}
    return best


def _is_unknown_key(error: ErrorDetails) -> bool:
    """A key the model has no field for, or a mapping key outside its ``Literal`` key type."""
    return error["type"] in _UNKNOWN_KEY_ERRORS or (error["type"] == "literal_error" and error["loc"][-1:] == (_KEY,))


def _is_type_error(error: ErrorDetails) -> bool:
    return error["type"].endswith("_type") or error["type"] in ("literal_error", "string_pattern_mismatch")


def _locate(model: type[BaseModel], loc: tuple) -> _Spot:
    """Follow an error location through model fields, mapping entries, list items, optional values and union members."""
    dotted, field, field_loc, parent = "", "", (), model
    annotation: Any = model
    for i, part in enumerate(loc):
        base = _base(annotation)
        if _is_model(base):  # a field, or an unknown key (YAML also has non-string ones: ``1: x``)
            parent, dotted = base, f"{dotted}.{part}" if dotted else str(part)
            field, field_loc = dotted, loc[: i + 1]
            info = base.model_fields.get(str(part))
            annotation = _annotated(info) if info is not None else Any
        elif typing.get_origin(base) is dict:  # an entry: its key, then (unless the key was refused) its value
            key_type, value_type = typing.get_args(base)
            dotted = f"{dotted}.{part}" if dotted else str(part)
            if loc[i + 1: i + 2] == (_KEY,):
                return _Spot(dotted, field, field_loc, key_type, parent, is_key=True)
            annotation = value_type
        elif isinstance(part, int) and typing.get_origin(base) in (list, tuple):
            dotted, annotation = f"{dotted}[{part}]", _item_type(base, part)
        elif isinstance(part, str) and _is_union(base):
            annotation = _member_for_tag(base, part)
            if annotation is None:
                break
        else:
            break
    return _Spot(dotted, field, field_loc, annotation, parent)


def _item_type(sequence: Any, index: int) -> Any:
    """The type of item ``index`` of a list or tuple type (a fixed-length tuple has one per place)."""
    args = typing.get_args(sequence)
    fixed = typing.get_origin(sequence) is tuple and Ellipsis not in args
    return args[index] if fixed and index < len(args) else args[0]


def _annotated(info: FieldInfo) -> Any:
    """A model field's type with its constraints and description attached again (pydantic splits them off)."""
    extras = [*info.metadata] + ([FieldInfo(description=info.description)] if info.description else [])
    if not extras:
        return info.annotation
    # Annotated[(t, *extras)] is what this means; mypy reads that spelling as 3.11-only syntax.
    return Annotated.__class_getitem__((info.annotation, *extras))  # type: ignore[attr-defined]


def _member_for_tag(union: Any, tag: str) -> Any:
    """The union member a pydantic location tag names (``constrained-float``, ``list[...]``, ``literal[...]``)."""
    wanted = tag.removeprefix("constrained-").split("[", 1)[0].lower()
    for member in typing.get_args(union):
        if _kind(_strip(member)) == wanted:
            return member
    return None


def _kind(base: Any) -> str:
    origin = typing.get_origin(base)
    if origin is Literal:
        return "literal"
    if origin is not None:
        return getattr(origin, "__name__", str(origin)).lower()
    return getattr(base, "__name__", str(base)).lower()


# ---------------------------------------------------------------------------------------------
# Types: unwrapping and describing


def _strip(annotation: Any) -> Any:
    """The type without its ``Annotated`` layers."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _metadata(annotation: Any) -> list[Any]:
    """The constraints and FieldInfos of every ``Annotated`` layer, FieldInfos flattened into their constraints."""
    found: list[Any] = []
    while typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        for extra in extras:
            found += [extra, *extra.metadata] if isinstance(extra, FieldInfo) else [extra]
    return found


def _is_union(base: Any) -> bool:
    return typing.get_origin(base) in (Union, types.UnionType)


def _is_model(base: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(base, type) and issubclass(base, BaseModel)


def _nullable_member(annotation: Any) -> Any:
    """``X`` (with its constraints) for ``X | None``, which pydantic's locations do not tag; else ``annotation``."""
    base = _strip(annotation)
    members = [m for m in typing.get_args(base) if m is not type(None)] if _is_union(base) else []
    return members[0] if len(members) == 1 else annotation


def _base(annotation: Any) -> Any:
    """The bare type a value is checked against: no ``Annotated``, and ``X`` for ``X | None``."""
    return _strip(_nullable_member(annotation))


def _expected(spot: _Spot, error: ErrorDetails) -> str:
    if error["type"] == "string_pattern_mismatch" and not _description(spot.annotation):
        return f"a string matching {error.get('ctx', {}).get('pattern')}"
    return _describe(spot.annotation)


def _description(annotation: Any) -> str | None:
    return next((m.description for m in _metadata(annotation) if isinstance(m, FieldInfo) and m.description), None)


def _describe(annotation: Any) -> str:
    """What a type expects, in words: ``an int``, ``'auto' or a number``, ``a non-empty list``."""
    description, base = _description(annotation), _strip(annotation)
    origin = typing.get_origin(base)
    if description:
        return description
    if _is_union(base):
        return " or ".join(_describe(member) for member in typing.get_args(base))
    if origin is Literal:
        values = ", ".join(repr(v) for v in typing.get_args(base))
        return values if len(typing.get_args(base)) == 1 else f"one of {values}"
    if origin in (list, tuple):
        non_empty = any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in _metadata(annotation))
        return "a non-empty list" if non_empty else "a list"
    if origin is dict or _is_model(base):
        return "a mapping"
    names = {type(None): "null", bool: "true or false", int: "an int", float: "a number", str: "a string"}
    return names.get(base, getattr(base, "__name__", str(base)))


def _interval(annotation: Any) -> str:
    """The declared bounds of a number type, as ``[lo, hi]`` (``(`` for an exclusive bound, ∞ if none)."""
    lo, hi = "(-∞", "∞)"
    for m in _metadata(annotation) + _metadata(_nullable_member(annotation)):
        if isinstance(m, annotated_types.Ge):
            lo = f"[{_number(m.ge)}"
        elif isinstance(m, annotated_types.Gt):
            lo = f"({_number(m.gt)}"
        elif isinstance(m, annotated_types.Le):
            hi = f"{_number(m.le)}]"
        elif isinstance(m, annotated_types.Lt):
            hi = f"{_number(m.lt)})"
    return f"{lo}, {hi}"


def _number(bound: Any) -> str:
    """An int bound exactly (a seed's 2⁶³ − 1 must not round), a float briefly (``0.01``, ``1e6``, ``1e-6``)."""
    if isinstance(bound, int):
        return str(bound)
    mantissa, e, exponent = f"{bound:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if e else mantissa


def _length(error: ErrorDetails) -> str:
    ctx, unit = error.get("ctx", {}), "character(s)" if isinstance(error["input"], str) else "item(s)"
    if error["type"].endswith("too_short"):
        return f"at least {ctx.get('min_length')} {unit}"
    return f"at most {ctx.get('max_length')} {unit}"


def _shown(value: Any, annotation: Any) -> str:
    """``repr(value)``, as the field reads it (an int given to a float field shows as a float), shortened."""
    if _base(annotation) is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
