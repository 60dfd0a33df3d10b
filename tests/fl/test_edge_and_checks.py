"""The edge node's parts (data sets by name, the egress, the round guards), the ``fl``
job's spec, and the coordinator's checks of an update: success and attack side by side."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from idlegrid import InvalidInput, NotFound
from idlegrid.edge import EdgeState, Egress, EgressTransport, read_capture, scan_datasets
from idlegrid.fl import check_update, load_spec
from idlegrid.workloads import get_workload

SPEC = {
    "model": {"family": "mlp", "inputs": 4, "hidden": [3], "classes": 2},
    "dataset": "farm",
    "rounds": 2,
    "clients_per_round": 3,
}


def _data(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(directory / "farm.npz", x=rng.random((20, 4), dtype=np.float32), y=np.arange(20) % 2)
    (directory / "notes.npz").write_bytes(b"not a zip")  # skipped
    np.savez(directory / "Bad Name.npz", x=np.zeros((2, 4)), y=np.zeros(2, int))  # skipped
    return directory


def test_an_edge_node_holds_data_sets_by_name_only(tmp_path: Path) -> None:
    # Execute
    found = scan_datasets(_data(tmp_path))
    state = EdgeState(tmp_path, b"k" * 32, Egress())

    # Assert: only the valid file, advertised by size; a peer's name never becomes a path
    assert list(found) == ["farm"]
    assert state.advertised() == {"farm": {"rows": 20, "features": [4], "labels": 2}}
    assert state.dataset("farm")[1] == 20
    for name in ("../farm", "/etc/passwd", "notes", "FARM"):
        with pytest.raises(NotFound, match="farm"):
            state.dataset(name)


def test_an_fl_job_names_a_data_set_by_a_safe_name_and_refuses_bad_fields() -> None:
    workload = get_workload("fl")
    base = {
        "stage": "fit", "run": "ab" * 32, "round": 1, "dataset": "farm",
        "model": SPEC["model"], "params": "cd" * 32, "examples": 20,
    }  # fmt: skip
    spec = workload.parse(base)
    assert workload.units(spec, None) > 0
    for bad, why in (
        ({"dataset": "../../etc/passwd"}, "dataset"),
        ({"params": None}, "params"),
        ({"stage": "unmask"}, "secagg"),
        ({"examples": 0}, "examples"),
        ({"lr": -1.0}, "lr"),
    ):
        with pytest.raises(InvalidInput, match=why):
            workload.parse({**base, **bad})


def test_a_plain_provider_refuses_fl_jobs() -> None:
    class Plain:
        edge = None

    workload = get_workload("fl")
    spec = workload.parse(
        {
            "stage": "keys",
            "run": "ab" * 32,
            "round": 1,
            "dataset": "farm",
            "model": SPEC["model"],
            "examples": 20,
        }
    )
    with pytest.raises(InvalidInput, match="edge nodes"):
        asyncio.run(workload.prepare(spec, Plain()))  # type: ignore[arg-type]


def test_an_edge_node_answers_one_unmask_and_masks_one_update_per_round(tmp_path: Path) -> None:
    state = EdgeState(_data(tmp_path), b"k" * 32, Egress())
    state.unmask_once("r", 1, [1, 2, 3], [4])
    state.unmask_once("r", 1, [1, 2, 3], [4])  # the same question again: a retry
    with pytest.raises(InvalidInput):
        state.unmask_once("r", 1, [1, 2, 4], [3])  # both secrets of 3 and 4: refused
    state.mask_once("r", 1, b"fields")
    with pytest.raises(InvalidInput):
        state.mask_once("r", 1, b"other fields")


def test_every_byte_out_passes_the_egress_and_is_captured(tmp_path: Path) -> None:
    # Prepare
    capture = tmp_path / "out.bin"
    egress = Egress(capture)
    seen: list[tuple[str, bytes]] = []
    egress.watch(lambda dest, data: seen.append((dest, data)))

    class Sock:
        def __init__(self) -> None:
            self.written: list[bytes] = []

        def get_extra_info(self, key: str) -> Any:
            return ("127.0.0.1", 9) if key == "peername" else None

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def is_closing(self) -> bool:
            return False

    sock = Sock()
    transport = EgressTransport(sock, egress)

    # Execute
    transport.write(b"HTTP/1.1 200 OK\r\n")
    transport.writelines([b"a", b"b"])
    egress.send("rpc", b'{"jsonrpc":"2.0"}')

    # Assert: the socket got exactly what passed; the capture holds it all, in order
    assert sock.written == [b"HTTP/1.1 200 OK\r\n", b"a", b"b"]
    assert not transport.is_closing()
    records = read_capture(capture)
    assert records == seen
    assert [d for _, d in records][-1] == b'{"jsonrpc":"2.0"}'
    assert egress.total == sum(len(d) for _, d in records)
    assert records[0][0] == "http:127.0.0.1:9"


def test_the_coordinator_refuses_bad_updates_with_a_reason() -> None:
    spec = load_spec({**SPEC, "max_update_norm": 10.0})
    dp = load_spec({**SPEC, "dp": {"clip": 0.5, "noise_multiplier": 1.0, "epsilon": 5.0}})
    g = np.zeros(26, np.float32)

    def row(params: np.ndarray, examples: int = 20) -> np.ndarray:
        return np.concatenate([[examples, 0.5], params]).astype(np.float64)

    good = row(np.full(26, 0.01))
    assert check_update(good, g, examples=20, spec=spec) is None
    assert "shape" in str(check_update(good[:-1], g, examples=20, spec=spec))
    nan = good.copy()
    nan[5] = np.nan
    assert "NaN" in str(check_update(nan, g, examples=20, spec=spec))
    assert "norm" in str(check_update(row(np.full(26, 100.0)), g, examples=20, spec=spec))
    assert "examples" in str(check_update(good, g, examples=21, spec=spec))
    assert "DP clip" in str(check_update(row(np.full(26, 0.5)), g, examples=20, spec=dp))


def test_a_spec_is_refused_before_any_work_when_it_cannot_run() -> None:
    for bad, why in (
        ({"min_clients": 5}, "min_clients"),
        ({"secagg": True, "strategy": {"name": "krum"}}, "secure aggregation"),
        ({"strategy": {"name": "fedmagic"}}, "fedmagic"),
        ({"dataset": "../x"}, "dataset"),
        ({"rounds": 0}, "rounds"),
        ({"secagg": True, "payout": "run"}, "payout: run nets"),
        ({"payout": "weekly"}, "payout"),
    ):
        with pytest.raises(InvalidInput, match=why):
            load_spec({**SPEC, **bad})
    with pytest.raises(InvalidInput, match="mapping"):
        load_spec("- a\n- list\n")


def test_a_run_refuses_named_nodes_that_are_not_addresses_and_keeps_the_ones_that_are() -> None:
    from typing import cast

    from idlegrid.client import Client
    from idlegrid.fl import Coordinator

    spec = load_spec(SPEC)
    val = (np.zeros((4, 4), np.float32), np.zeros(4, np.int64))
    nobody = cast(Client, None)  # refused before the client is asked anything
    for nodes, why in (([], "at least one edge node"), (["site-2"], "not an Ethereum address")):
        with pytest.raises(InvalidInput, match=why):
            Coordinator(nobody, spec, val, nodes=nodes)

    from types import SimpleNamespace

    me = cast(Client, SimpleNamespace(account=SimpleNamespace(address="0x" + "22" * 20)))
    site = "0x" + "ab" * 20
    kept = Coordinator(me, spec, val, nodes=[site.upper().replace("0X", "0x")])
    assert kept.nodes == {site}


def test_a_secure_run_with_rewards_over_unnamed_nodes_says_what_that_risks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from types import SimpleNamespace
    from typing import cast

    from idlegrid.client import Client
    from idlegrid.fl import Coordinator

    me = cast(Client, SimpleNamespace(account=SimpleNamespace(address="0x" + "22" * 20)))
    val = (np.zeros((4, 4), np.float32), np.zeros(4, np.int64))
    secure = load_spec({**SPEC, "secagg": True})

    # Execute: unnamed and named nodes, with rewards; a clear run's; no rewards
    with caplog.at_level("WARNING", logger="idlegrid.fl"):
        Coordinator(me, secure, val, rewards=10**18)
    unnamed = caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="idlegrid.fl"):
        Coordinator(me, secure, val, rewards=10**18, nodes=["0x" + "ab" * 20])
        Coordinator(me, load_spec(SPEC), val, rewards=10**18)
        Coordinator(me, secure, val)

    # Assert: only the first warns, naming the remedy
    assert "more seats" in unnamed and "--node" in unnamed
    assert "seats" not in caplog.text


def test_a_clear_run_is_paid_at_its_end_unless_it_asks_for_rounds_and_a_secure_one_by_round() -> (
    None
):
    # a clear run nets its contributions (rounds a client hurt offset those it helped);
    # a secure one can only post round by round; either is kept when named
    assert load_spec(SPEC).payout == "run"
    assert load_spec({**SPEC, "secagg": True}).payout == "round"
    assert load_spec({**SPEC, "secagg": "yes"}).payout == "round"  # YAML's words for true
    assert load_spec({**SPEC, "payout": "round"}).payout == "round"
    # the default is part of the spec, so of its hash: the same run whichever was written
    assert load_spec(SPEC).spec_hash() == load_spec({**SPEC, "payout": "run"}).spec_hash()
    assert load_spec(SPEC).spec_hash() != load_spec({**SPEC, "payout": "round"}).spec_hash()


def _stage_job(state: EdgeState, stage: str, roster: list[dict[str, Any]], **extra: Any) -> bytes:
    import pickle

    spec = {
        "stage": stage, "run": "ab" * 32, "round": 1, "dataset": "farm",
        "model": SPEC["model"], "examples": 20,
        "secagg": {"index": 1, "roster": roster, "threshold": 2, "clip_range": 8.0,
                   "target_range": 2**22, "mod_range": 2**32, **extra},
    }  # fmt: skip
    from idlegrid.workloads._kind_fl import FlSpec

    job = {"spec": FlSpec.model_validate(spec).model_dump(), "data": "", "secret": state.secret}
    return pickle.dumps(job)


def test_members_check_every_roster_key_s_signature(tmp_path: Path) -> None:
    from idlegrid.protocol import array_from_npy
    from idlegrid.workloads._kind_fl import run

    # Prepare: three edge nodes' signed keys for one round
    states = [EdgeState(_data(tmp_path), bytes([i + 1]) * 32, Egress()) for i in range(3)]
    roster = [{"index": i + 1, **s.signed_keys("ab" * 32, 1)} for i, s in enumerate(states)]

    # Execute: the share stage with the roster as signed, and with one member's keys
    # swapped for the coordinator's own (signed by nobody in the roster)
    shares = array_from_npy(run(_stage_job(states[0], "share", roster)), max_bytes=1 << 20)
    forged = [dict(e) for e in roster]
    intruder = EdgeState(tmp_path, b"\x09" * 32, Egress()).signed_keys("ab" * 32, 1)
    forged[1].update(pk1=intruder["pk1"], pk2=intruder["pk2"])

    # Assert: shares for all three; the swapped keys are refused, naming the member
    assert shares.dtype == np.uint8 and shares.shape[0] == 1
    with pytest.raises(InvalidInput, match="member 2"):
        run(_stage_job(states[0], "share", forged))


def test_the_shipped_example_spec_loads() -> None:
    spec = load_spec(Path(__file__).parents[2] / "examples" / "fl-digits.yaml")
    assert spec.secagg and spec.rounds == 30 and spec.strategy.name == "fedavg"


def test_an_edge_node_answers_an_unmask_only_to_the_client_who_paid_the_round_s_fit(
    tmp_path: Path,
) -> None:
    import json

    from idlegrid import Unauthorized
    from idlegrid.workloads._kind_fl import FlSpec, run

    # Prepare: three members' signed keys and the shares the others addressed to member 1
    run_id = "ab" * 32
    states = [EdgeState(_data(tmp_path), bytes([i + 1]) * 32, Egress()) for i in range(3)]
    roster = [{"index": i + 1, **s.signed_keys(run_id, 1)} for i, s in enumerate(states)]
    numbers = {"threshold": 2, "clip_range": 8.0, "target_range": 2**22, "mod_range": 2**32}

    def spec(stage: str, index: int, rnd: int = 1, **secagg: Any) -> dict[str, Any]:
        return {
            "stage": stage, "run": run_id, "round": rnd, "dataset": "farm",
            "model": SPEC["model"], "examples": 20,
            "secagg": {"index": index, "roster": roster, **numbers, **secagg},
        }  # fmt: skip

    def shares_from(k: int) -> dict[str, str]:
        import pickle

        from idlegrid.protocol import array_from_npy

        job = {"spec": FlSpec.model_validate(spec("share", k)).model_dump(), "data": ""}
        raw = run(pickle.dumps({**job, "secret": states[k - 1].secret}))
        out = array_from_npy(raw, max_bytes=1 << 20)
        return dict(json.loads(out.tobytes()))

    inbox = {str(k): shares_from(k)["1"] for k in (1, 2, 3)}
    ask = spec("unmask", 1, inbox=inbox, survivors=[1, 2, 3], dropped=[])
    body = json.dumps(ask).encode()
    payer, stranger = "0x" + "aa" * 20, "0x" + "bb" * 20
    member = states[0]
    member.record_fit(run_id, 1, payer)

    # Execute + Assert: a stranger, a round with no fit here, a bad body: refused first
    with pytest.raises(Unauthorized, match="paid this round's masked fit"):
        asyncio.run(member.unmask(stranger, body))
    with pytest.raises(NotFound, match="no masked fit of round 2"):
        asyncio.run(member.unmask(payer, json.dumps({**ask, "round": 2}).encode()))
    with pytest.raises(InvalidInput, match="unmask stage"):
        asyncio.run(member.unmask(payer, json.dumps(spec("share", 1)).encode()))
    with pytest.raises(InvalidInput, match="at most"):
        asyncio.run(member.unmask(payer, b" " * (2 << 20)))

    # the payer gets member 1's share of each survivor's self mask
    answer = json.loads(asyncio.run(member.unmask(payer.upper().replace("0X", "0x"), body)))
    assert sorted(answer) == ["1", "2", "3"]
    assert all(len(bytes.fromhex(s)) == 4 + 48 for s in answer.values())
    # and cannot ask again with another split (both secrets of member 3)
    other = spec("unmask", 1, inbox=inbox, survivors=[1, 2], dropped=[3])
    with pytest.raises(InvalidInput, match="already answered"):
        asyncio.run(member.unmask(payer, json.dumps(other).encode()))
