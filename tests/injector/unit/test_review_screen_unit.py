"""The bytes-level screen before a review's parse gives the answers of the plain walk it
replaced (strings split out, every bracket walked), on random documents with strings that
hold brackets, commas, escaped quotes and backslashes, on broken ones, and at the limits."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from random import Random

import pytest

from injector.serving.review_queue import MAX_DEPTH, MAX_VALUES, PASSES_UP_TO, _screen
from injector.webhook.errors import MalformedReview

TOO_DEEP = "too deep"
TOO_MANY = "too many"


def reference(body: bytes) -> str:
    """The walk the screen replaced: every value counted, every bracket walked."""
    if body.count(b'"') > 4 * MAX_VALUES:
        return TOO_MANY
    kept = re.sub(rb'\\[\\"]', b"", body)
    kept = kept.translate(None, bytes(c for c in range(256) if c not in b'"[]{},'))
    structure = b"".join(kept.split(b'"')[::2])
    if structure.count(b",") + structure.count(b"[") + structure.count(b"{") >= MAX_VALUES:
        return TOO_MANY
    steps = (1 if c in b"[{" else -1 if c in b"]}" else 0 for c in structure)
    return TOO_DEEP if max(accumulate(steps), default=0) > MAX_DEPTH else "ok"


def screened(body: bytes) -> str:
    try:
        _screen(body)
    except MalformedReview as refused:
        return TOO_DEEP if "nested" in str(refused) else TOO_MANY
    return "ok"


STRINGS = ["a", "[x", "]", "\\", '"[', "{}", '\\"', "a,b", "", "\\[", "]]]],{"]


def document(random: Random, depth: int = 0) -> object:
    """Mostly one child a container, so a good share runs past MAX_DEPTH."""
    roll = random.random()
    if depth > 80 or roll < 0.03:
        return random.choice([*STRINGS, 1, True, None])
    width = random.choice([0, 1, 1, 1, 1, 1, 1, 2, 3])
    if roll < 0.5:
        return [document(random, depth + 1) if i == 0 else "[" for i in range(width)]
    return {random.choice(STRINGS) + str(i): document(random, depth + 1) for i in range(width)}


def nested(depth: int) -> bytes:
    return b"[" * depth + b'"]]"' + b"]" * depth


def test_random_documents_are_screened_as_the_walk_screens_them() -> None:
    random = Random(5)
    refused = 0
    for _ in range(4000):
        body = json.dumps(document(random)).encode()
        assert screened(body) == reference(body), body
        refused += reference(body) != "ok"
    assert 500 < refused < 3500  # deep ones and shallow ones


def test_broken_bodies_are_screened_as_the_walk_screens_them() -> None:
    random = Random(6)
    for _ in range(4000):
        length = random.randint(0, 300)
        body = bytes(random.choice(b'[]{},"\\a:') for _ in range(length))
        assert screened(body) == reference(body), body


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2, 500])
@pytest.mark.parametrize(
    "shape", ["balanced", "unclosed", "one short", "inside a list", "a closer first"]
)
def test_the_depth_limit_holds_at_its_edge_balanced_or_not(depth: int, shape: str) -> None:
    bodies = {
        "balanced": nested(depth),
        "unclosed": b"[" * depth,
        "one short": nested(depth)[:-1],
        "inside a list": b"[1," + nested(depth - 1) + b',"[[[["]',
        # depth + 1 pairs survive MAX_DEPTH passes, but the walk starts one below zero
        "a closer first": b"]" + nested(depth),
    }
    body = bodies[shape]
    assert screened(body) == reference(body)


def test_a_structure_larger_than_the_passes_take_is_walked_with_the_same_answers() -> None:
    blocks = PASSES_UP_TO // (2 * MAX_DEPTH - 2) + 1
    fine = b"[" + b",".join([nested(MAX_DEPTH - 1)] * blocks) + b"]"
    deep = b"[" + b",".join([nested(MAX_DEPTH - 1)] * blocks + [nested(MAX_DEPTH)]) + b"]"
    assert fine.count(b"[") + fine.count(b"]") > PASSES_UP_TO  # its structure
    assert (screened(fine), screened(deep)) == ("ok", TOO_DEEP)
    assert (reference(fine), reference(deep)) == ("ok", TOO_DEEP)


def test_too_many_values_is_refused_with_or_without_strings() -> None:
    numbers = b"[" + b"0," * MAX_VALUES + b"0]"
    strings = b"[" + b'"a",' * MAX_VALUES + b'"a"]'
    commas_in_strings = b'["' + b"," * (2 * MAX_VALUES) + b'"]'
    quotes = b'"' * (4 * MAX_VALUES + 2)  # more than a key and a string a value
    assert [screened(body) for body in (numbers, strings, quotes)] == [TOO_MANY] * 3
    assert screened(commas_in_strings) == reference(commas_in_strings) == "ok"
