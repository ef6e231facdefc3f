"""Derived names: valid where Kubernetes uses them, and never shared by two resources."""

from __future__ import annotations

import re

import pytest

from servelab.controller import render
from servelab.controller.settings import Settings
from servelab.core import Owner
from servelab.names import DNS1035, LABEL_VALUE, child_name, label_value

pytestmark = pytest.mark.unit
SUFFIXES = [
    "server",
    "worker",
    "warmup",
    "load-0",
    "load-12-result",
    "eval-3",
    "quantize",
    "score-iq4-xs-imatrix",
]


def test_two_long_names_with_a_common_63_character_prefix_share_no_child_and_no_label() -> None:
    a = "qwen3-4b-instruct-2507-iq4-xs-imatrix-llamacpp-h200-sweep-concurrency-1-to-100-a"
    b = a[:-1] + "b"
    assert len(a) > 63 and a[:63] == b[:63]
    for suffix in SUFFIXES:
        ca, cb = child_name("ServeBenchmark", a, 1, suffix), child_name("ServeBenchmark", b, 1, suffix)
        assert ca != cb and DNS1035.match(ca) and DNS1035.match(cb) and len(ca) <= 63 and len(cb) <= 63
    assert label_value(a) != label_value(b) and all(
        LABEL_VALUE.match(v) for v in (label_value(a), label_value(b))
    )
    # and the server of each selects only its own pods: selectors are by owner uid, not by name
    s = Settings()
    sel = {
        n: render.owner_selector(Owner("ServeBenchmark", n, "ns", f"uid-{n[-1]}", 1), s.prefix)
        for n in (a, b)
    }
    assert sel[a] != sel[b]


@pytest.mark.parametrize(
    "name", ["glm-4.7-flash-sglang-eagle", "1st-run", "a.b", "a-b", "UPPER.case", "x" * 253, "a" * 62]
)
def test_children_are_dns_1035_labels(name: str) -> None:
    for kind in ("ServeBenchmark", "QuantJob"):
        for gen in (1, 123456):
            for suffix in SUFFIXES:
                c = child_name(kind, name, gen, suffix)
                assert DNS1035.match(c) and len(c) <= 63, c


def test_names_that_differ_only_in_dots_or_kind_do_not_collide() -> None:
    assert child_name("ServeBenchmark", "a.b", 1, "server") != child_name(
        "ServeBenchmark", "a-b", 1, "server"
    )
    # a QuantJob and a ServeBenchmark of one name each get their own worker ServiceAccount
    assert child_name("QuantJob", "x", 1, "worker") != child_name("ServeBenchmark", "x", 1, "worker")
    # readable when already valid
    assert child_name("ServeBenchmark", "bench", 2, "load-0") == "bench-g2-load-0"
    assert re.fullmatch(
        r"glm-4-7-flash-sglang-eagle-g1-server-[0-9a-f]{8}",
        child_name("ServeBenchmark", "glm-4.7-flash-sglang-eagle", 1, "server"),
    )
