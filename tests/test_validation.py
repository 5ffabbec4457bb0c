"""edge_mcepl.validation: pydantic errors as one-line UserErrors, the dotted-key setter, re-validating copies."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import pytest
from pydantic import Field, ValidationError, model_validator

from edge_mcepl.errors import UserError
from edge_mcepl.validation import StrictModel, set_dotted, validate, validate_json


class Section(StrictModel):
    count: int = Field(3, ge=1, le=10)
    share: float = Field(0.5, gt=0, le=1)
    mode: Literal["fast", "slow"] = "fast"
    limit: Annotated[int, Field(ge=0)] | None = None
    ratio: Literal["auto"] | Annotated[float, Field(ge=0.01, le=1)] = "auto"
    shares: Annotated[float, Field(gt=0, le=1)] | Annotated[list[Annotated[float, Field(gt=0, le=1)]],
                                                            Field(min_length=1)] = 0.5
    tag: str = Field("a", pattern=r"^[a-z]+$", description="a lower-case word")


class Document(StrictModel):
    name: str
    flag: bool = False
    section: Section = Field(default_factory=Section)

    @model_validator(mode="after")
    def _consistent(self) -> Document:
        if self.flag and self.section.mode == "slow":
            raise ValueError("flag needs section.mode 'fast'")
        return self


def message(raw) -> str:
    with pytest.raises(UserError) as err:
        validate(Document, raw, "doc.yaml")
    text = str(err.value)
    assert "\n" not in text and text.startswith("doc.yaml: ")
    return text.removeprefix("doc.yaml: ")


@pytest.mark.parametrize("section, expected", [
    ({"count": 2.5}, "section.count: expected an int, got 2.5"),
    ({"count": "four"}, "section.count: expected an int, got 'four'"),
    ({"count": True}, "section.count: expected an int, got True"),
    ({"count": 0}, "section.count: 0 is outside [1, 10]"),
    ({"share": 0}, "section.share: 0.0 is outside (0, 1]"),
    ({"share": "half"}, "section.share: expected a number, got 'half'"),
    ({"mode": "medium"}, "section.mode: expected one of 'fast', 'slow', got 'medium'"),
    ({"limit": -1}, "section.limit: -1 is outside [0, ∞)"),
    ({"limit": "2"}, "section.limit: expected an int or null, got '2'"),
    ({"ratio": 1.5}, "section.ratio: 1.5 is outside [0.01, 1]"),
    ({"ratio": "automatic"}, "section.ratio: expected 'auto' or a number, got 'automatic'"),
    ({"shares": [0.5, "high"]}, "section.shares[1]: expected a number, got 'high'"),
    ({"shares": [0.5, 1.2]}, "section.shares[1]: 1.2 is outside (0, 1]"),
    ({"shares": []}, "section.shares: expected at least 1 item(s), got []"),
    ({"shares": "x"}, "section.shares: expected a number or a non-empty list, got 'x'"),
    ({"tag": "Two words"}, "section.tag: expected a lower-case word, got 'Two words'"),
    ({"count": 2, "cuont": 3}, "unknown key 'section.cuont' (known: count, limit, mode, ratio, share, shares, tag)"),
])
def test_field_errors_name_the_dotted_field(section, expected):
    assert message({"name": "n", "section": section}) == expected


def test_document_level_errors():
    assert message({"section": {}}) == "missing key 'name'"
    assert message({"nmae": "n"}).startswith("unknown key 'nmae' (known: flag, name, section)")  # before 'missing'
    assert message(["a", "list"]) == "must be a mapping, got ['a', 'list']"
    assert message({"name": "n", 1: 2}).startswith("unknown key '1' (known: ")  # YAML keys need not be strings
    assert message({"name": "n", "section": 3}) == "section: expected a mapping, got 3"
    assert message({"name": "n", "flag": 1}) == "flag: expected true or false, got 1"
    assert message({"name": "n", "flag": True, "section": {"mode": "slow"}}) == "flag needs section.mode 'fast'"
    assert message({"name": list(range(100))}).endswith("...") and len(message({"name": list(range(100))})) < 120


def test_valid_values_floats_from_ints_and_frozen():
    doc = validate(Document, {"name": "n", "section": {"share": 1, "shares": [1, 0.25], "ratio": 1}}, "doc.yaml")
    assert doc.section.share == 1.0 and isinstance(doc.section.share, float)
    assert doc.section.shares == [1.0, 0.25] and doc.section.ratio == 1.0
    with pytest.raises(ValidationError):
        doc.name = "other"  # type: ignore[misc]  # frozen: refused at run time too


def test_replace_revalidates_and_copies():
    doc = validate(Document, {"name": "n"}, "doc.yaml")
    changed = doc.replace(section=doc.section.replace(count=5))
    assert (changed.section.count, doc.section.count) == (5, 3)
    with pytest.raises(ValidationError):
        doc.section.replace(count=11)
    with pytest.raises(ValidationError):
        doc.replace(flag=True, section=doc.section.replace(mode="slow"))


def test_set_dotted_copies_and_never_mutates():
    original = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    updated = set_dotted(original, "a.c.d", 4)
    assert updated == {"a": {"b": 1, "c": {"d": 4}}, "e": 3}
    assert original == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert set_dotted({}, "x.y", None) == {"x": {"y": None}}
    assert set_dotted({"x": None}, "x.y", 1) == {"x": {"y": 1}}
    assert set_dotted(original, "e", 5)["e"] == 5 and original["e"] == 3
    with pytest.raises(ValueError, match="'e.f'"):
        set_dotted(original, "e.f", 1)


class Entry(StrictModel):
    text: str = Field(min_length=1)


class Message(StrictModel):
    format: Literal["test-message/1"]
    files: dict[Literal["a.txt", "b.txt"], Entry] = {}
    peers: dict[Annotated[int, Field(ge=0)], list[int]] = {}
    arrays: dict[str, tuple[str, list[int]]] = {}
    deadline: float = Field(1.0, ge=0.01, le=1e6)


def json_message(raw) -> str:
    with pytest.raises(UserError) as err:
        validate_json(Message, raw if isinstance(raw, bytes) else json.dumps(raw), "msg.json")
    text = str(err.value)
    assert "\n" not in text and text.startswith("msg.json: ")
    return text.removeprefix("msg.json: ")


def test_json_documents_read_with_json_types():
    doc = validate_json(Message, json.dumps({"format": "test-message/1", "peers": {"0": [1]},
                                             "arrays": {"w": ["<f4", [2, 3]]}}), "msg.json")
    assert doc.peers == {0: [1]} and doc.arrays == {"w": ("<f4", [2, 3])}
    assert doc.model_dump(mode="json")["peers"] == {"0": [1]}  # and written back as JSON has them
    with pytest.raises(UserError, match="peers.0: expected an int, got '0'"):
        validate(Message, {"format": "test-message/1", "peers": {"0": [1]}}, "data")  # Python data: a mistake


@pytest.mark.parametrize("changed, expected", [
    ({"files": {"c.txt": {"text": "x"}}}, "unknown key 'files.c.txt' (known: a.txt, b.txt)"),
    ({"files": {"a.txt": {}}}, "missing key 'files.a.txt.text'"),
    ({"files": {"a.txt": {"text": ""}}}, "files.a.txt.text: expected at least 1 character(s), got ''"),
    ({"peers": {"x": []}}, "peers.x: expected an int, got 'x'"),
    ({"peers": {"1": [0, "2"]}}, "peers.1[1]: expected an int, got '2'"),
    ({"arrays": {"w": ["<f4", [2, "3"]]}}, "arrays.w[1][1]: expected an int, got '3'"),
    ({"arrays": {"w": [4, [2]]}}, "arrays.w[0]: expected a string, got 4"),
    ({"deadline": 0}, "deadline: 0.0 is outside [0.01, 1e6]"),
    ({"format": "test-message/2", "other": 1}, "format 'test-message/2', this edge-mcepl reads test-message/1"),
])
def test_mapping_entries_and_formats_are_named_like_fields(changed, expected):
    assert json_message({"format": "test-message/1", **changed}) == expected


def test_documents_that_are_not_json_or_not_objects():
    assert json_message(b"\x80 not json").startswith("not JSON (")
    assert json_message(b"{").startswith("not JSON (")
    assert json_message([1]) == "must be a mapping, got [1]"
    assert json_message({}) == "format None, this edge-mcepl reads test-message/1"  # before 'missing key'
