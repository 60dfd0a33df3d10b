"""The registry of kinds, the ``onnx`` and ``embed`` kinds' pure functions and specs,
and ``idlegrid workloads``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from idlegrid import InvalidInput
from idlegrid.protocol import NodeInfo
from idlegrid.workloads import (
    EMBED_DIM,
    EmbedWorkload,
    OnnxWorkload,
    embed_flops,
    get_workload,
    register,
    workloads,
)

SHA = "ab" * 32


def test_the_package_registers_onnx_and_embed() -> None:
    # Execute
    names = [w.name for w in workloads()]

    # Assert
    assert names == sorted(names) and {"onnx", "embed"} <= set(names)
    assert all(get_workload(n).name == n for n in names)


def test_an_unknown_kind_is_invalid_input_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match=r"no workload of kind 'no-such-kind'.*'onnx'"):
        get_workload("no-such-kind")


@pytest.mark.parametrize("name", ["onnx", "ONNX", "", "a b"])
def test_a_taken_or_malformed_name_is_refused(name: str) -> None:
    # Prepare
    kind = OnnxWorkload()
    kind.name = name  # type: ignore[misc]

    # Execute / Assert
    with pytest.raises(ValueError, match="name"):
        register(kind)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"model": SHA}, "exactly one"),
        ({"model": SHA, "input_npy": "x", "input_blob": SHA}, "exactly one"),
        ({"model": "0" * 63, "input_npy": "x"}, "model"),
        ({"model": SHA, "input_npy": "x", "texts": ["a"]}, "texts"),
    ],
)
def test_an_onnx_spec_is_checked_on_parse(fields: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        get_workload("onnx").parse(fields)


def test_an_embed_spec_needs_texts() -> None:
    with pytest.raises(InvalidInput, match="texts"):
        get_workload("embed").parse({"texts": []})


def test_onnx_units_are_flops_per_row_times_rows() -> None:
    # Prepare
    onnx = get_workload("onnx")
    spec = onnx.parse({"model": SHA, "input_npy": "x"})

    # Execute / Assert
    assert onnx.units(spec, (1234, 5)) == 6170


def test_embed_units_outputs_and_split_are_those_of_its_texts() -> None:
    # Prepare
    embed = get_workload("embed")
    assert isinstance(embed, EmbedWorkload)  # whose units and outputs need no inputs
    texts = ["one", "two words", "and three words", "four"]
    spec = embed.parse({"texts": texts})

    # Execute
    parts = embed.split(texts, 3)
    joined = embed.join([np.ones((3, EMBED_DIM), np.float32), np.zeros((1, EMBED_DIM), np.float32)])

    # Assert
    assert embed.units(spec) == embed_flops(texts)
    assert embed.outputs(spec).describe() == f"float32[N, {EMBED_DIM}]"
    assert parts == [texts[:3], texts[3:]] and joined.shape == (4, EMBED_DIM)


def test_onnx_splits_rows_and_joins_outputs_in_order() -> None:
    # Prepare
    onnx = get_workload("onnx")
    rows = np.arange(20, dtype=np.float32).reshape(10, 2)

    # Execute
    parts = onnx.split(rows, 4)
    joined = onnx.join(parts)

    # Assert
    assert [p.shape[0] for p in parts] == [4, 4, 2]
    np.testing.assert_array_equal(joined, rows)


def test_node_info_from_an_older_node_without_specs_still_parses() -> None:
    # Prepare
    old = {
        "address": "0x" + "11" * 20,
        "chain_id": 1,
        "market": "0x" + "22" * 20,
        "unit_price": 1,
        "workloads": ["onnx"],
        "hardware": {},
        "capabilities_hash": "0x" + "33" * 32,
        "limits": {},
        "version": "0.1",
    }

    # Execute
    info = NodeInfo.model_validate(old)
    newer = NodeInfo.model_validate({**old, "specs": {}, "a_field_from_later": 1})

    # Assert
    assert info.specs == {} and newer.specs == {}


def test_idlegrid_workloads_json_lists_onnx_and_embed_with_their_schemas() -> None:
    # Execute
    out = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", "workloads", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )

    # Assert
    kinds = {k["name"]: k for k in json.loads(out.stdout)["workloads"]}
    assert kinds["onnx"]["spec"] == get_workload("onnx").schema()
    assert kinds["embed"]["spec"] == get_workload("embed").schema()
    assert set(kinds["onnx"]["spec"]["properties"]) == {"model", "input_npy", "input_blob"}
