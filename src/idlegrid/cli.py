"""The `idlegrid` command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from . import IdlegridError, InvalidInput

app = typer.Typer(
    name="idlegrid",
    help="An open network that turns idle GPUs and CPUs into paid AI compute.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
devnet_app = typer.Typer(
    help="A local chain with the idlegrid contracts, for trying things by hand."
)
bench_app = typer.Typer(help="Measured benchmarks; each prints one JSON object with --json.")
node_app = typer.Typer(help="Run a provider node: stake, serve jobs, earn tokens.")
app.add_typer(devnet_app, name="devnet")
app.add_typer(bench_app, name="bench")
app.add_typer(node_app, name="node")

console = Console(stderr=True)
out = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _tokens(wei: int) -> str:
    return f"{wei / 10**18:,.4f}"


def _progress(enabled: bool) -> Any:
    return (lambda msg: console.print(f"[dim]•[/dim] {msg}")) if enabled else None


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def demo(
    as_json: JsonFlag = False,
    ledger: Annotated[
        bool, typer.Option("--ledger", help="Only the ledger's money loop (no nodes), in 2 s.")
    ] = False,
    explorer: Annotated[
        bool, typer.Option("--explorer", help="Serve the explorer on the demo's devnet.")
    ] = False,
    linger: Annotated[
        float,
        typer.Option(help="Seconds to keep the devnet (and explorer) up after the demo."),
    ] = 0.0,
) -> None:
    """The main job: 3 providers, a sharded batch, a provider killed mid-batch, payment."""
    if ledger:
        _ledger_demo(as_json)
        return
    from .demo import run_demo

    if not 0 <= linger <= 86400:
        raise typer.BadParameter("linger must be 0..86400 seconds")
    result = run_demo(progress=_progress(True), explorer=explorer, linger=linger)
    if as_json:
        _print_json(result)
    else:
        _print_network_demo(result)
    if not (
        result["balances_conserved"]
        and result["results_match_local"]
        and result["locked_in_channels"] == 0
    ):
        raise typer.Exit(1)


def _print_network_demo(result: dict[str, Any]) -> None:
    table = Table(title="Providers, from the chain (JobMarket.record, ProviderRegistry)")
    for col in (
        "provider",
        "address",
        "shards",
        "jobs",
        "units",
        "earned",
        "stake",
        "receipts root",
    ):
        table.add_column(
            col, justify="left" if col in {"provider", "address", "receipts root"} else "right"
        )
    for p in result["providers"]:
        name = p["name"] + (" (killed)" if p["killed_mid_batch"] else "")
        root = p["receipts_root"] or "-"
        table.add_row(
            name,
            p["address"],
            str(p["shards_served"]),
            str(p["jobs"]),
            f"{p['units']:,}",
            _tokens(p["tokens_earned"]),
            _tokens(p["stake"]),
            root[:18] + "…" if len(root) > 18 else root,
        )
    out.print(table)
    balances = Table(title="Token balances: wallet + market account + stake")
    for col in ("account", "before", "after", "change"):
        balances.add_column(col, justify="right")
    for name, b in result["balances_before"].items():
        a = result["balances_after"][name]
        tb, ta = sum(b.values()), sum(a.values())
        balances.add_row(name, _tokens(tb), _tokens(ta), f"{(ta - tb) / 10**18:+,.4f}")
    balances.add_row("open channels", "0.0000", _tokens(result["locked_in_channels"]), "")
    out.print(balances)
    batch = result["batch"]
    spend = result["provider_spends_earnings"]
    out.print(
        f"batch: {batch['rows']} rows, {batch['shards']} jobs in {batch['seconds']}s, "
        f"{len(batch['failovers'])} fail-over(s); results match local onnxruntime: "
        f"{result['results_match_local']}"
    )
    out.print(
        f"a provider spent {_tokens(spend['paid_to_others'])} of its earnings on compute "
        f"(wallet + market balance {_tokens(spend['holdings_before'])} -> "
        f"{_tokens(spend['holdings_after'])})"
    )
    ok = result["balances_conserved"]
    out.print(f"balances conserved: [{'green' if ok else 'red'}]{ok}[/] · {result['seconds']}s")


def _ledger_demo(as_json: bool) -> None:
    from .demo import run_ledger_demo

    result = run_ledger_demo(progress=_progress(True))
    if as_json:
        _print_json(result)
        return
    table = Table(title="Contributions recorded on chain (JobMarket.record)")
    for col in ("provider", "address", "jobs", "units", "tokens earned", "stake", "receipts root"):
        table.add_column(
            col, justify="right" if col in {"jobs", "units", "tokens earned", "stake"} else "left"
        )
    for p in result["providers"]:
        table.add_row(
            p["name"],
            p["address"],
            str(p["jobs"]),
            f"{p['units']:,}",
            _tokens(p["tokens_earned"]),
            _tokens(p["stake"]),
            p["receipts_root"][:18] + "…",
        )
    out.print(table)
    balances = Table(title="Token balances (wallet + market account)")
    for col in ("account", "wallet before", "market before", "wallet after", "market after"):
        balances.add_column(col, justify="right")
    for name, b in result["balances_before"].items():
        a = result["balances_after"][name]
        balances.add_row(
            name,
            _tokens(b["wallet"]),
            _tokens(b["market"]),
            _tokens(a["wallet"]),
            _tokens(a["market"]),
        )
    out.print(balances)
    proof = result["receipt_proof"]
    out.print(
        f"receipt proof: python={proof['python']} on-chain={proof['on_chain']} "
        f"({proof['proof_length']} hashes) · settlement gas {result['gas']['per_job']:,} per job · "
        f"refunded on close {_tokens(result['refunded_on_close'])}"
    )
    ok = result["balances_conserved"]
    out.print(f"balances conserved: [{'green' if ok else 'red'}]{ok}[/]")
    if not ok:
        raise typer.Exit(1)


@devnet_app.command("up")
def devnet_up(
    providers: Annotated[
        int, typer.Option(help="Dev accounts 1..N registered as staked providers.")
    ] = 0,
    accounts: Annotated[int, typer.Option(help="Funded dev accounts.")] = 10,
    backend: Annotated[
        str, typer.Option(help="auto (anvil if installed), anvil or embedded.")
    ] = "auto",
    port: Annotated[int | None, typer.Option(help="RPC port (default: a free one).")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Where devnet.json is written.")] = Path(
        "."
    ),
    explorer: Annotated[
        bool, typer.Option("--explorer/--no-explorer", help="Serve the network explorer too.")
    ] = True,
) -> None:
    """Start a local chain, deploy the contracts, fund accounts, write devnet.json."""
    from .devnet import devnet_up as up

    if backend not in {"auto", "anvil", "embedded"}:
        raise typer.BadParameter("backend must be auto, anvil or embedded")
    info = up(
        directory,
        providers=providers,
        accounts=accounts,
        backend=backend,
        port=port,
        progress=_progress(True),
        explorer=explorer,
    )
    console.print(
        f"devnet up: {info['rpc_url']} (chain {info['chain_id']}) · "
        f"token {info['contracts']['token']} · {directory / 'devnet.json'}"
    )
    if info.get("explorer_url"):
        console.print(f"explorer: {info['explorer_url']}")


@devnet_app.command("down")
def devnet_down(
    directory: Annotated[Path, typer.Option("--dir", help="Where devnet.json is.")] = Path("."),
) -> None:
    """Stop everything `devnet up` started here."""
    from .devnet import devnet_down as down

    pids = down(directory)
    console.print(f"devnet down: stopped {len(pids)} process(es)")


def _network_file(path: Path) -> Path:
    """Refuse a network file that is not there as the command line is parsed: before the
    command imports the chain client (seconds), so a wrong path is said at once."""
    from ._devnet_file import devnet_file

    devnet_file(path)
    return path


NetworkOpt = Annotated[
    Path,
    typer.Option(
        "--network",
        "--devnet",
        help="devnet.json-style file: rpc_url, chain_id, contracts.",
        callback=_network_file,
    ),
]
#: the same option, checked only when the command needs the chain (``train`` refuses a
#: bad job before it looks for a network, and ``--make-digits`` needs none)
LateNetworkOpt = Annotated[
    Path,
    typer.Option(
        "--network", "--devnet", help="devnet.json-style file: rpc_url, chain_id, contracts."
    ),
]
AccountOpt = Annotated[
    int | None, typer.Option("--account", help="Index of a dev account in the network file.")
]
KeystoreOpt = Annotated[
    Path | None, typer.Option(help="eth-account keystore file (password from $IDLEGRID_PASSWORD).")
]


def _identity(network: Path, account: int | None, keystore: Path | None, default: int) -> Any:
    """(Account, Ledger) from a network file and a key source."""
    import os

    _network_file(network)  # a missing file is refused before seconds of imports
    from .devnet import load_devnet
    from .protocol import KEY_ENV, Account

    info = load_devnet(network)
    if keystore is not None:
        key = Account.from_keystore(keystore, os.environ.get("IDLEGRID_PASSWORD", ""))
    elif account is not None or not os.environ.get(KEY_ENV):
        index = default if account is None else account
        if not 0 <= index < len(info.accounts):
            raise typer.BadParameter(f"the network file has {len(info.accounts)} accounts")
        key = info.accounts[index]
    else:
        key = Account.from_env()
    return key, info.ledger()


@node_app.command("start")
def node_start(
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one).")] = 8700,
    public_url: Annotated[str | None, typer.Option(help="URL registered on chain.")] = None,
    price: Annotated[
        int, typer.Option(help="Tokens (wei) per compute unit (1 unit = 1 FLOP).")
    ] = 10**12,
    stake: Annotated[float, typer.Option(help="Stake in tokens.")] = 100.0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Blobs and journal (default .idlegrid/node-ADDRESS).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Concurrent jobs (worker processes).")] = 2,
    job_timeout: Annotated[float, typer.Option(help="Wall-time limit per job, seconds.")] = 30.0,
    memory_mb: Annotated[int, typer.Option(help="Memory limit per worker, MiB (0: none).")] = 4096,
    train: Annotated[
        bool, typer.Option(help="Also serve training jobs (needs PyTorch: idlegrid[train]).")
    ] = False,
    embed: Annotated[
        bool, typer.Option(help="Also serve sentence embeddings (needs idlegrid[embed]).")
    ] = False,
    redeem_after: Annotated[
        float, typer.Option(help="Redeem a voucher once it is this many seconds old.")
    ] = 30.0,
    upload_allowance: Annotated[
        int, typer.Option(help="Bytes of blobs a key without an open channel may store.")
    ] = 64 * 2**20,
    max_store: Annotated[
        int, typer.Option(help="Bytes the blob store may hold (least recently used go first).")
    ] = 32 * 2**30,
    credit_jobs: Annotated[
        int, typer.Option(help="Jobs a client may have unvouched (delivered or running).")
    ] = 64,
    max_unpaid: Annotated[
        float, typer.Option(help="Tokens a client may owe beyond its vouchers (0: no limit).")
    ] = 0.0,
    channel_refresh: Annotated[
        float, typer.Option(help="Seconds between re-reads of a channel that falls short.")
    ] = 2.0,
    max_connections: Annotated[int, typer.Option(help="Open HTTP connections at most.")] = 256,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds a client may take to send request headers.")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may take (plus 1 s per 64 KiB).")
    ] = 30.0,
    metered: Annotated[
        bool,
        typer.Option(
            "--metered",
            help="Run models with control flow or data-dependent sizes, billed by CPU time.",
        ),
    ] = False,
    units_per_cpu_s: Annotated[
        int, typer.Option(help="Compute units billed per CPU-second (metered and failed jobs).")
    ] = 10**10,
    max_jobs_per_client: Annotated[
        int, typer.Option(help="Jobs one client may have running or queued (then 429).")
    ] = 8,
    max_output_mb: Annotated[
        int, typer.Option(help="Largest job output, MiB (larger ones fail, billed).")
    ] = 64,
    threads: Annotated[int, typer.Option(help="onnxruntime threads per job (intra-op).")] = 1,
    cheat_rate: Annotated[
        float,
        typer.Option(help="TESTING AID: answer this fraction of jobs wrongly (0: honest)."),
    ] = 0.0,
    cheat_mode: Annotated[
        str,
        typer.Option(
            help="TESTING AID: how to lie: random, noise, skip, stale "
            "(outputs) or skip-steps, interpolate (train runs)."
        ),
    ] = "random",
    cheat_after: Annotated[
        int, typer.Option(help="TESTING AID: cheat only after this many honest jobs.")
    ] = 0,
    cheat_seed: Annotated[
        int | None, typer.Option(help="TESTING AID: seed of the choice of jobs to cheat on.")
    ] = None,
    oracle: Annotated[
        bool,
        typer.Option(
            "--oracle", help="Also answer the oracle contract's requests (see docs/oracle.md)."
        ),
    ] = False,
    log_json: LogJsonOpt = False,
    log_level: LogLevelOpt = "info",
) -> None:
    """Join the network as a provider: probe hardware, stake, register, serve /v1."""
    import os

    from .chain import TOKEN, free_port
    from .provider import NodeConfig, build_node, serve_node
    from .workloads import THREADS_ENV

    fmt, say = _node_logging(log_json, log_level)
    key, ledger = _identity(network, account, keystore, default=1)
    config = NodeConfig(
        data_dir=data_dir or Path(".idlegrid") / f"node-{key.address.lower()}",
        host=host,
        port=port or free_port(),
        public_url=public_url,
        unit_price=price,
        stake=int(stake * TOKEN),
        workers=workers,
        job_timeout_s=job_timeout,
        memory_mb=memory_mb or None,
        workloads=("onnx", "sgd", *(("embed",) if embed else ()), *(("train",) if train else ())),
        redeem_max_age_s=redeem_after,
        upload_allowance_bytes=upload_allowance,
        max_store_bytes=max_store,
        credit_jobs=credit_jobs,
        max_unpaid_per_client=int(max_unpaid * TOKEN) or None,
        channel_refresh_s=channel_refresh,
        max_connections=max_connections,
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        metered=metered,
        units_per_cpu_s=units_per_cpu_s,
        max_jobs_per_client=max_jobs_per_client,
        max_output_bytes=max_output_mb * 2**20,
        max_inline_output_bytes=min(4 * 2**20, max_output_mb * 2**20),
        threads=threads,
        cheat_rate=cheat_rate,
        cheat_mode=cheat_mode,
        cheat_after=cheat_after,
        cheat_seed=cheat_seed,
    )
    if cheat_rate and fmt == "text":  # the node logs it too
        console.print(
            f"[bold red]THIS NODE CHEATS[/bold red] (a testing aid): {cheat_mode} output on "
            f"{cheat_rate:.0%} of jobs after {cheat_after} honest ones"
        )
    os.environ[THREADS_ENV] = str(threads)  # read by the worker tasks (onnx, embed)
    node = build_node(key, ledger, config)
    if oracle:
        from .oracle import attach_oracle

        attach_oracle(node)
    serve_node(node, say=say, own_logging=True)


LogJsonOpt = Annotated[
    bool,
    typer.Option(
        "--log-json", help="Log one JSON object per line (also IDLEGRID_LOG_FORMAT=json)."
    ),
]
LogLevelOpt = Annotated[
    str, typer.Option(help="Least level of idlegrid's records: debug, info, warning, error.")
]


def _node_logging(log_json: bool, log_level: str) -> tuple[str, Callable[[str], None]]:
    """Configure a node's logging: its format ("text" or "json") and how to say a line."""
    import logging

    from .provider import configure_logging, log_format

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter(f"--log-level must be debug, info, warning or error: {log_level}")
    fmt = log_format(log_json)
    configure_logging(fmt, level=level)

    def say(line: str) -> None:
        if fmt == "json":  # the node's lines are then all JSON objects
            logging.getLogger("idlegrid.provider").info("%s", line)
        else:
            console.print(f"[dim]•[/dim] {line}")

    return fmt, say


@node_app.command("status")
def node_status(
    url: Annotated[
        str, typer.Option(help="The running node's URL (its GET /v1/status).")
    ] = "http://127.0.0.1:8700",
    as_json: JsonFlag = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the node.")] = 10.0,
) -> None:
    """A running node's earnings on chain, unredeemed vouchers, open channels, latest jobs."""
    import httpx

    from .protocol import NodeStatus

    target = url.rstrip("/") + "/v1/status"
    try:
        resp = httpx.get(target, timeout=timeout)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the node at {url}: {type(exc).__name__}: {exc}")
    if resp.status_code != 200:
        _fail(f"{target} answered HTTP {resp.status_code} (is it an idlegrid node, and current?)")
    try:
        status = NodeStatus.model_validate_json(resp.content)
    except ValueError:
        _fail(f"{target} did not answer with a node's status")
    if as_json:
        _print_json(status.model_dump(mode="json"))
        return
    _print_node_status(status)


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit 1."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _ago(seconds: float) -> str:
    """A duration, short: 42s, 5m, 3h, 2d."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _print_node_status(status: Any) -> None:
    out.print(
        f"node {status.address} (idlegrid {status.version}), "
        f"up {_ago(status.time - status.started)}"
    )
    e = status.earnings
    if e is None:
        out.print("earned on chain: unknown (the node could not read the chain)")
    else:
        out.print(
            f"earned on chain: {_tokens(e.earned)} tokens for {e.jobs:,} jobs, "
            f"{e.units:,} units (JobMarket.record)"
        )
    v = status.vouchers
    out.print(f"unredeemed vouchers: {v.count}, {_tokens(v.tokens)} tokens")
    shown = len(status.channels)
    more = f", the {shown} latest to expire" if shown < status.open_channels else ""
    channels = Table(title=f"Open channels: {status.open_channels}{more}")
    for col in ("channel", "client", "deposit", "paid", "remaining", "expires in"):
        channels.add_column(col, justify="left" if col in {"channel", "client"} else "right")
    for c in status.channels:
        channels.add_row(
            c.channel[:10] + "…",
            c.client,
            _tokens(c.deposit),
            _tokens(c.paid),
            _tokens(c.remaining),
            _ago(c.expiry - status.time),
        )
    out.print(channels)
    jobs = Table(title=f"Latest jobs: {len(status.jobs)}")
    for col in ("job", "kind", "outcome", "units", "tokens", "when"):
        jobs.add_column(col, justify="left" if col in {"job", "kind", "outcome"} else "right")
    for j in status.jobs:
        jobs.add_row(
            j.job_id[:10] + "…",
            j.kind,
            j.outcome,
            "-" if j.units is None else f"{j.units:,}",
            "-" if j.amount is None else _tokens(j.amount),
            _ago(status.time - j.created) + " ago",
        )
    out.print(jobs)


StoreOpt = Annotated[
    Path | None,
    typer.Option(help="The local model store (default $IDLEGRID_CACHE/models)."),
]


@app.command()
def infer(
    model: Annotated[
        str,
        typer.Option(
            help="ONNX model file, or the sha256 of a registered model in the model store."
        ),
    ],
    input: Annotated[Path, typer.Option("--input", help=".npy array of input rows.")],
    output: Annotated[Path, typer.Option(help="Where to write the .npy output.")],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    rows_per_shard: Annotated[
        int | None, typer.Option(help="Rows per job (default: auto).")
    ] = None,
    store: StoreOpt = None,
    unregistered: Annotated[
        bool, typer.Option(help="Run a model named by hash even if the chain does not know it.")
    ] = False,
) -> None:
    """Run an ONNX model over a batch on the network, paying providers through channels."""
    import numpy as np

    from .client import Client, ModelStore, parse_model_hash

    key, ledger = _identity(network, account, keystore, default=0)
    try:
        x = np.load(input, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {input} as .npy: {exc}") from exc
    digest = parse_model_hash(model)
    with Client(key, ledger, progress=True) as client:
        y = client.infer(
            digest or Path(model),
            x,
            rows_per_shard=rows_per_shard,
            store=ModelStore(store) if store else None,
            require_registered=not unregistered,
        )
        report = client.last_report
    np.save(output, y, allow_pickle=False)
    console.print(
        f"{x.shape[0]} rows in {report.shards} jobs on {len(report.by_provider)} provider(s) "
        f"in {report.seconds:.2f}s, {len(report.failovers)} fail-over(s) -> {output}"
    )


@app.command()
def embed(
    input: Annotated[Path, typer.Option("--input", help="Text file, one sentence per line.")],
    output: Annotated[Path, typer.Option(help="Where to write the .npy embeddings [n, 384].")],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
) -> None:
    """Sentence embeddings (all-MiniLM-L6-v2) for each line of a text file, on the network."""
    import numpy as np

    from .client import Client

    try:
        texts = [line for line in input.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {input}: {exc.strerror}") from exc
    if not texts:
        raise typer.BadParameter(f"{input} has no non-empty lines")
    key, ledger = _identity(network, account, keystore, default=0)
    with Client(key, ledger, progress=True) as client:
        vectors = client.embed(texts)
        report = client.last_report
    np.save(output, vectors, allow_pickle=False)
    console.print(
        f"{len(texts)} texts in {report.shards} jobs on {len(report.by_provider)} provider(s) "
        f"in {report.seconds:.2f}s -> {output}"
    )


@app.command()
def train(
    spec: Annotated[
        Path | None, typer.Argument(help="The training job, a YAML file (docs/network.md).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="The data set: .npz with x, y, x_val, y_val.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Directory the trained model is written to.")
    ] = None,
    network: LateNetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Go on from the checkpoint a stopped run left in this directory."),
    ] = None,
    make_digits: Annotated[
        Path | None,
        typer.Option(
            help="Write scikit-learn's packaged 8x8 digits as a data set here (shaped for "
            "SPEC's model family; mlp without SPEC) and exit."
        ),
    ] = None,
    store: StoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a model on the network: paid per segment, failed over, verified by
    proof-of-learning, registered with its lineage; writes its weights, ONNX and metrics."""
    from .client import Client, ModelStore
    from .client._train import load_dataset, load_job

    if make_digits is not None:
        family = str(load_job(spec).model.get("family", "mlp")) if spec else "mlp"
        rows = _write_digits(make_digits, family)
        console.print(
            f"{rows} digits ({family}: 1400 to train, the rest to validate) -> {make_digits}"
        )
        return
    if spec is None or data is None or output is None:
        raise typer.BadParameter("give SPEC, --data and --output (or --make-digits PATH)")
    job = load_job(spec)
    blob = load_dataset(data)
    _check_training(job, blob)  # everything that can be refused before any work
    point = _read_resume(resume) if resume is not None else None
    key, ledger = _identity(network, account, keystore, default=0)
    with Client(key, ledger) as client, _TrainDisplay(not as_json) as display:
        try:
            model = client.train(
                job,
                blob,
                on_event=display,
                resume_from=point,
                store=ModelStore(store) if store else None,
            )
        except (KeyboardInterrupt, IdlegridError) as exc:
            display.stop()
            if not display.enabled:  # --json: why each provider was left, on stderr
                for f in display.failovers:
                    console.print(f"fail-over at step {f.step}: {f.provider} ({f.reason[:300]})")
            stopped = getattr(exc, "resume_from", None)
            if stopped is not None:
                _write_resume(output, stopped)
                console.print(
                    f"stopped at step {stopped.step}: its checkpoint is in {output}; go on with\n"
                    f"  idlegrid train {spec} --data {data} --output {output} --resume {output}"
                )
            if isinstance(exc, KeyboardInterrupt):
                raise typer.Exit(130) from None
            raise
    files = model.save(output)
    (output / RESUME_FILE).unlink(missing_ok=True)  # a stopped run's, now finished
    final = model.epochs[-1] if model.epochs else {}
    if as_json:
        _print_json(
            {
                **model.describe(),
                "final": final,
                "epochs": model.epochs,
                "files": {k: str(v) for k, v in files.items()},
            }
        )
        return
    _print_trained(model, final, files)


#: what a stopped run leaves beside its checkpoint.npy: its step and checkpoint hashes
RESUME_FILE = "resume.json"


class _TrainDisplay:
    """A progress bar on stderr (step/total, live loss, validation accuracy, tokens paid)
    and a line per segment and per fail-over; nothing when disabled (``--json``)."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.enabled = enabled
        self.failovers: list[Any] = []
        self.bar = Bar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("training", total=None, stats="")

    def __enter__(self) -> _TrainDisplay:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.enabled:
            self.bar.stop()

    def __call__(self, event: Any) -> None:
        from .client import Failover

        if isinstance(event, Failover):
            self.failovers.append(event)
        if not self.enabled:
            return
        if isinstance(event, Failover):
            self.bar.console.print(
                f"[yellow]fail-over[/yellow] at step {event.step}: {event.provider} "
                f"({event.reason[:160]}); going on elsewhere from the last checkpoint"
            )
            return
        m = event.metrics
        parts = [f"loss {m['loss']:.4f}"] if "loss" in m else []
        if "val_loss" in m:
            parts.append(f"val loss {m['val_loss']:.4f}")
        if "val_accuracy" in m:
            parts.append(f"val acc {m['val_accuracy']:.1%}")
        parts.append(f"paid {_tokens(event.amount)}")
        stats = " · ".join(parts)
        done = event.step >= event.total
        self.bar.update(
            self.task,
            completed=event.step,
            total=event.total,
            stats=stats,
            description="verifying" if done else "training",
        )
        self.bar.console.print(
            f"[dim]•[/dim] step {event.step}/{event.total} on {event.provider[:10]}…: {stats}"
        )


def _check_training(job: Any, blob: bytes) -> None:
    """Refuse what ``Client.train`` would refuse before any work (InvalidInput): the data
    set's hash, the model, the data set's shapes, the run's layout."""
    import hashlib

    from .client._train import _base, layout
    from .workloads import get_workload
    from .workloads._kind_train import TrainSpec, read_dataset, state_size

    if not blob.startswith(b"PK"):  # an .npz is a zip of .npy files
        raise InvalidInput("the data set is not an .npz (a zip of x, y, x_val, y_val as .npy)")
    digest = hashlib.sha256(blob).hexdigest()
    if job.data_hash is not None and job.data_hash != digest:
        raise InvalidInput(
            f"data hash mismatch: the job names {job.data_hash}, the data is {digest}"
        )
    probe = get_workload("train").parse(
        {**_base(job, 1, None), "data": "0" * 64, "start": 0, "steps": 1}
    )
    assert isinstance(probe, TrainSpec)
    arrays = read_dataset(blob, probe)
    layout(job, len(arrays[1]), state_size(probe))


def _write_digits(path: Path, family: str) -> int:
    """scikit-learn's digits (packaged: no download) as a training data set."""
    from .verify._pol import digits_data
    from .workloads._kind_train import train_dataset

    x, y = digits_data(family)
    try:
        path.write_bytes(train_dataset(x[:1400], y[:1400], x[1400:], y[1400:]))
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from exc
    return len(y)


def _write_resume(directory: Path, point: Any) -> None:
    """``checkpoint.npy`` (the state) and ``resume.json`` (its step and hashes so far)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "checkpoint.npy").write_bytes(point.state)
        (directory / RESUME_FILE).write_text(json.dumps(point.describe(), indent=1))
    except OSError as exc:
        console.print(f"[red]could not keep the checkpoint in {directory}: {exc.strerror}[/red]")


def _read_resume(directory: Path) -> Any:
    """The checkpoint a stopped run left in ``directory`` (``_write_resume``)."""
    from .client import TrainCheckpoint

    try:
        facts = json.loads((directory / RESUME_FILE).read_text())
        state = (directory / "checkpoint.npy").read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{directory} has no stopped run's checkpoint: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidInput(f"{directory / RESUME_FILE} is not JSON ({exc})") from exc
    if not isinstance(facts, dict):
        raise InvalidInput(f"{directory / RESUME_FILE} is not a checkpoint's description")
    return TrainCheckpoint.from_description(facts, state)


def _print_trained(model: Any, final: dict[str, float], files: dict[str, Path]) -> None:
    """The summary of a trained model (stdout)."""
    run = model.run
    out.print(f"model {model.model_hash} (sha256 of model.onnx)")
    line = f"trained {run.steps} steps in {sum(run.segments.values())} segment(s)"
    if "val_accuracy" in final:
        line += f" · val accuracy {final['val_accuracy']:.1%} · val loss {final['val_loss']:.4f}"
    out.print(line)
    report = model.verification
    if report is None:
        out.print("verification: none (the job's verify: none)")
    else:
        outcome = "[green]ok[/green]" if report.ok else "[red]failed[/red]"
        out.print(
            f"verification: {outcome} · {report.checked} intervals replayed, "
            f"{len(report.failed)} failed (largest distance {report.max_distance:.3g}) · "
            f"run {model.run_id}"
        )
    for d in model.disputes:
        out.print(f"dispute {d.dispute}: {d.outcome}")
    for provider, paid in run.paid.items():
        segments = run.segments.get(provider, 0)
        out.print(f"paid {provider}: {_tokens(paid)} tokens for {segments} segment(s)")
    for f in run.failovers:
        out.print(f"fail-over at step {f.step}: {f.provider}")
    out.print("wrote " + ", ".join(str(p) for p in files.values()))


@app.command("workloads")
def workloads_list(
    as_json: JsonFlag = False,
    node: Annotated[
        str | None, typer.Option(help="A node's URL: the kinds it serves (its /v1/info).")
    ] = None,
) -> None:
    """The kinds of job this installation (or a node) supports, with each spec's JSON schema."""
    from .workloads import workloads

    if node is None:
        kinds = [(w.name, w.summary, w.schema()) for w in workloads()]
    else:
        kinds = [(name, "", schema) for name, schema in _node_specs(node).items()]
    if as_json:
        _print_json(
            {"workloads": [{"name": n, "summary": s, "spec": spec} for n, s, spec in kinds]}
        )
        return
    table = Table(title="Workloads (? marks an optional field)")
    for col in ("kind", "what it does", "spec fields"):
        table.add_column(col, justify="left")
    for name, summary, schema in kinds:
        required = set(schema.get("required", ()))
        fields = ", ".join(f + ("" if f in required else "?") for f in schema.get("properties", {}))
        table.add_row(name, summary, fields)
    out.print(table)


def _node_specs(url: str) -> dict[str, dict[str, Any]]:
    """The spec schemas a node advertises, by kind (an older node: its kinds, no schema)."""
    import httpx

    from .protocol import NodeInfo

    try:
        resp = httpx.get(url.rstrip("/") + "/v1/info", timeout=10.0)
        resp.raise_for_status()
        info = NodeInfo.model_validate_json(resp.content)
    except (httpx.HTTPError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {url}/v1/info: {exc}") from exc
    return {kind: info.specs.get(kind, {}) for kind in info.workloads}


model_app = typer.Typer(help="Models on chain: register one, show its lineage.")
app.add_typer(model_app, name="model")

HashOpt = Annotated[str | None, typer.Option(help="A sha256, 64 hex characters.")]


def _sha256_arg(value: str | None, what: str) -> bytes:
    if value is None:
        return bytes(32)
    text = value.removeprefix("0x").lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise IdlegridError(f"{what} must be a sha256 (64 hex characters), not {value!r}")
    return bytes.fromhex(text)


@model_app.command("register")
def model_register(
    model: Annotated[Path, typer.Argument(help="The model file (its sha256 names it).")],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    spec_hash: HashOpt = None,
    data_hash: HashOpt = None,
    checkpoints_root: HashOpt = None,
    parent: HashOpt = None,
    trainer: Annotated[str | None, typer.Option(help="Who trained it (an address).")] = None,
    store: StoreOpt = None,
    upload: Annotated[
        bool,
        typer.Option(help="Also upload it to every provider (oracle requests find it there)."),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Record a model's lineage on chain (once: the first record stands), keep the file
    in the local model store, where `idlegrid infer --model HASH` finds it, and upload it
    to the providers, so that a contract can ask the oracle about it at once."""
    import hashlib

    from .chain import ModelRegistryClient
    from .client import ModelStore
    from .protocol import checksum

    try:
        data = model.read_bytes()
    except OSError as exc:
        raise IdlegridError(f"cannot read {model}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).digest()
    # stored first: a model someone else registered can still be run from here
    (ModelStore(store) if store else ModelStore.default()).put(data)
    key, ledger = _identity(network, account, keystore, default=0)
    models = ledger.client("models", ModelRegistryClient)
    tx = models.register(
        digest,
        spec_hash=_sha256_arg(spec_hash, "--spec-hash"),
        data_hash=_sha256_arg(data_hash, "--data-hash"),
        checkpoints_root=_sha256_arg(checkpoints_root, "--checkpoints-root"),
        trainer=checksum(trainer) if trainer else "0x" + "00" * 20,
        parent=_sha256_arg(parent, "--parent"),
        sender=key,
    )
    tx_hash = tx.tx_hash
    if not as_json:
        out.print(f"registered model {digest.hex()} by {key.address} (tx {tx_hash})")
    width = _declare_width(ledger, data, digest, key)
    if width and not as_json:
        out.print(f"the oracle refuses requests of another width than {width} features")
    uploaded: dict[str, str] = {}
    if upload:
        from .client import Client

        with Client(key, ledger, timeout_s=60.0) as client:
            uploaded = client.publish(data)
        if not as_json:
            held = sum(1 for v in uploaded.values() if v == "ok")
            out.print(f"uploaded to {held} of {len(uploaded)} provider(s)")
            for address, why in uploaded.items():
                if why != "ok":
                    out.print(f"  {address}: {why}")
    if as_json:
        _print_json(
            {"model": digest.hex(), "registrant": key.address, "tx": tx_hash,
             "uploaded": uploaded, "input_width": width}
        )  # fmt: skip


def _declare_width(ledger: Any, data: bytes, digest: bytes, key: Any) -> int | None:
    """Tell the oracle how many features an ONNX model of one row-shaped input takes
    (None for another file, or a ledger without an oracle)."""
    from .chain import OracleClient
    from .workloads import model_info

    try:
        oracle = ledger.client("oracle", OracleClient)
        info = model_info(data)
    except IdlegridError:
        return None
    if len(info.inputs) != 1 or any(not isinstance(d, int) for d in info.inputs[0].shape[1:]):
        return None
    width = 1
    for d in info.inputs[0].shape[1:]:
        width *= int(d or 1)
    if not 1 <= width <= 64:
        return None
    oracle.declare_width(digest, width, sender=key)
    return width


@model_app.command("show")
def model_show(
    model: Annotated[str, typer.Argument(help="The model's sha256.")],
    network: NetworkOpt = Path("devnet.json"),
    as_json: JsonFlag = False,
) -> None:
    """A model's lineage from the chain: it, the model it was fine-tuned from, and so on,
    each with its data contributors and their shares (from the posting that paid them)
    and its usage royalty."""
    from datetime import UTC, datetime

    from .chain import ModelRegistryClient
    from .devnet import load_devnet

    digest = _sha256_arg(model, "the model hash")
    ledger = load_devnet(network).ledger()  # reading needs no key
    lineage = ledger.client("models", ModelRegistryClient).lineage(digest)
    if not lineage:
        raise IdlegridError(f"model {digest.hex()} is not registered")
    rows: list[dict[str, Any]] = [
        {
            "model": r.model.hex(),
            "spec_hash": r.spec_hash.hex(),
            "data_hash": r.data_hash.hex(),
            "checkpoints_root": r.checkpoints_root.hex(),
            "trainer": r.trainer,
            "registrant": r.registrant,
            "registered_at": r.registered_at,
            "parent": r.parent.hex() if any(r.parent) else None,
            "run": r.run.hex() if any(r.run) else None,
            "training": _training_row(r.training) if r.training else None,
        }
        for r in lineage
    ]
    for row, record in zip(rows, lineage, strict=True):
        row.update(_contributors_row(ledger, record))
    if as_json:
        _print_json({"lineage": rows})
        return
    for depth, (row, record) in enumerate(zip(rows, lineage, strict=True)):
        when = datetime.fromtimestamp(record.registered_at, UTC).isoformat(timespec="seconds")
        pad = "  " * depth
        out.print(f"{pad}{row['model']}  registered by {row['registrant']} at {when}")
        for key in ("spec_hash", "data_hash", "checkpoints_root", "trainer"):
            out.print(f"{pad}  {key}: {row[key]}")
        if row["participants"]:
            out.print(f"{pad}  participants: {len(row['participants'])} (federated round)")
        if (posting := row["contributors"]) is not None:
            out.print(
                f"{pad}  data contributors (round {posting['round']}'s posting, "
                f"{_tokens(posting['total'])} IDLE):"
            )
            for c in posting["shares"]:
                out.print(
                    f"{pad}    {c['contributor']}  {c['share']:.2%}  ({_tokens(c['amount'])} IDLE)"
                )
        if (royalty := row["royalty"]) is not None:
            out.print(
                f"{pad}  royalty: {royalty['rate']} wei per unit, {royalty['data_bps'] / 100:g} % "
                f"of its own part to data contributors; data royalties "
                f"{_tokens(royalty['data_received'])} IDLE received, "
                f"{_tokens(royalty['data_claimed'])} claimed"
            )
        if (training := row["training"]) is not None:
            out.print(
                f"{pad}  training run {row['run']}: committed by {training['committer']} "
                f"in block {training['block']}, {training['intervals']} intervals"
            )
            out.print(
                f"{pad}  verification: {training['outcome']} ({training['checked']} "
                f"intervals checked, {training['failed']} failed; seed {training['seed']})"
            )


def _contributors_row(ledger: Any, record: Any) -> dict[str, Any]:
    """A model's federated participants, the posting that pays its data contributors
    (each one's amount and share, read from the chain) and its royalty terms."""
    from .chain import ModelRegistryClient, RewardPoolClient

    models = ledger.client("models", ModelRegistryClient)
    row: dict[str, Any] = {
        "participants": models.participants(record.model) if any(record.run) else [],
        "contributors": None,
        "royalty": None,
    }
    if "rewards" not in ledger.clients:
        return row
    pool = ledger.client("rewards", RewardPoolClient)
    posted = pool.posted(record.model, ledger.deployment.start_block)
    if posted is not None:
        shares = posted.shares()
        row["contributors"] = {
            "run": posted.run.hex(),
            "round": posted.round,
            "total": posted.total,
            "inputs": posted.inputs.hex(),
            "shares": [
                {"contributor": c, "amount": a, "share": shares[c]}
                for c, a in sorted(posted.amounts.items(), key=lambda item: -item[1])
            ],
        }
    terms = pool.royalty(record.model)
    data = pool.royalties_of(record.model)
    if terms is not None or data.received:
        row["royalty"] = {
            "rate": terms.rate if terms else 0,
            "data_bps": terms.data_bps if terms else 0,
            "data_received": data.received,
            "data_claimed": data.claimed,
        }
    return row


def _training_row(t: Any) -> dict[str, Any]:
    """A TrainingRecord as JSON: the commitment, the seed, the verification outcome."""
    return {
        "committer": t.committer,
        "block": t.block,
        "intervals": t.intervals,
        "seed": t.seed.hex() if any(t.seed) else None,
        "outcome": t.outcome.name.lower().replace("_", " "),
        "checked": t.checked,
        "failed": t.failed,
    }


channels_app = typer.Typer(
    help="Your payment channels: list them, close them to take back what they did not pay."
)
app.add_typer(channels_app, name="channels")


@channels_app.command("list")
def channels_list(
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    closed: Annotated[bool, typer.Option("--all", help="Closed channels too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The channels you opened as a client (from the chain), open ones by default."""
    from .client import open_index

    key, ledger = _identity(network, account, keystore, default=0)
    index = open_index(ledger)
    try:
        found = index.channels(client=key.address, status=None if closed else "open")
    finally:
        index.close()
    window = ledger.market.close_window()
    rows = [
        {
            "channel": "0x" + c.id.hex(),
            "provider": c.provider,
            "status": str(c.status),
            "deposit": c.deposit,
            "paid": c.paid,
            "locked": c.remaining if c.status == "open" else 0,
            "expiry": c.expiry,
            "client_may_close_at": c.expiry + window,
        }
        for c in found
    ]
    if as_json:
        _print_json({"client": key.address, "channels": rows})
        return
    table = Table(title=f"Channels of {key.address}")
    for col in ("channel", "provider", "status", "deposit", "paid", "locked", "client may close"):
        left = col in {"channel", "provider", "status"}
        table.add_column(col, justify="left" if left else "right")
    for r in rows:
        table.add_row(
            r["channel"][:14] + "…",
            r["provider"],
            r["status"],
            _tokens(r["deposit"]),
            _tokens(r["paid"]),
            _tokens(r["locked"]),
            str(r["client_may_close_at"]),
        )
    out.print(table)


@channels_app.command("close")
def channels_close(
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Close your open channels: each provider redeems its latest voucher and closes early;
    a channel past its expiry and close window you close yourself."""
    from dataclasses import asdict

    from .client import Client

    key, ledger = _identity(network, account, keystore, default=0)
    with Client(key, ledger) as client:
        closed = client.close_channels(all_open=True)
    if as_json:
        _print_json({"client": key.address, "channels": [asdict(c) for c in closed]})
    else:
        for c in closed:
            state = "closed" if c.closed else "still open"
            console.print(f"{c.channel[:14]}… to {c.provider}: {state} ({c.how})")
        console.print(f"{sum(c.closed for c in closed)} of {len(closed)} channel(s) closed")
    if not all(c.closed for c in closed):
        raise typer.Exit(1)


@bench_app.command("settlement")
def bench_settlement(
    as_json: JsonFlag = False,
    backend: Annotated[str, typer.Option(help="anvil (the benchmark) or embedded.")] = "anvil",
) -> None:
    """Gas per settled job with payment channels versus one transfer per job."""
    from .bench import run_settlement

    result = run_settlement(backend=backend, progress=_progress(not as_json))
    if as_json:
        _print_json(result)
        return
    table = Table(title=f"Settlement gas on {result['chain']}")
    table.add_column("jobs per redemption", justify="right")
    table.add_column("gas per job", justify="right")
    for n, gas in result["gas_per_job"].items():
        table.add_row(n, f"{gas:,.1f}")
    table.add_row("naive (transfer per job)", f"{result['naive_gas_per_job']:,.1f}")
    out.print(table)
    out.print(f"target gas_per_job[100] <= 1000: {result['target']['met']}")


@bench_app.command("verify")
def bench_verify(
    as_json: JsonFlag = False,
    trials: Annotated[int, typer.Option(help="Trials per cheating mode.")] = 10,
    jobs: Annotated[int, typer.Option(help="Jobs per trial.")] = 200,
    cheat_rate: Annotated[float, typer.Option(help="Fraction of jobs the cheater fakes.")] = 0.1,
    steady_jobs: Annotated[int, typer.Option(help="Jobs of the steady-state batch.")] = 2000,
) -> None:
    """Catching a cheating provider: detection, false accusations, overhead, disputes."""
    from .bench import run_verify

    result = run_verify(
        trials=trials,
        jobs=jobs,
        cheat_rate=cheat_rate,
        steady_jobs=steady_jobs,
        progress=_progress(not as_json),
    )
    if as_json:
        _print_json(result)
        return
    t = result["targets"]
    table = Table(title="Verification on loopback (4 providers, one cheating)")
    for col in ("figure", "value", "target", "met"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    table.add_row(
        "detection_rate (worst mode)", f"{result['detection_rate']:.3f}",
        f">= {t['detection_rate_min']}", str(t["detection_rate_met"]),
    )  # fmt: skip
    table.add_row(
        "false_positives", str(result["false_positives"]), f"<= {t['false_positives_max']}",
        str(t["false_positives_met"]),
    )  # fmt: skip
    table.add_row(
        "overhead (steady state)", f"{result['overhead']:.4f}", f"<= {t['overhead_max']}",
        str(t["overhead_met"]),
    )  # fmt: skip
    table.add_row("slashed", str(result["slashed"]), "True", str(result["slashed"]))
    table.add_row("dispute_gas", f"{result['dispute_gas']}", "", "")
    for mode, m in result["modes"].items():
        low, high = m["detection_rate_95ci"]
        table.add_row(
            f"  {mode}", f"{m['caught']}/{m['trials']} caught", f"95% CI {low}-{high}", ""
        )
    out.print(table)


@bench_app.command("train")
def bench_train(
    as_json: JsonFlag = False,
    steps: Annotated[int, typer.Option(help="Steps of the main job (about 60 s).")] = 8000,
    checks: Annotated[int, typer.Option(help="Intervals a verification replays.")] = 64,
    trials: Annotated[int, typer.Option(help="Cheating runs per mode.")] = 50,
    cheat_rate: Annotated[
        float, typer.Option(help="Fraction of intervals the cheater fabricates.")
    ] = 0.1,
) -> None:
    """Training on the network: throughput, verification cost, cheaters caught."""
    from .bench import run_train

    result = run_train(
        steps=steps,
        checks=checks,
        trials=trials,
        cheat_rate=cheat_rate,
        progress=_progress(not as_json),
    )
    if as_json:
        _print_json(result)
        return
    t = result["targets"]
    table = Table(title="Training on loopback (3 providers; a cheater in the trials)")
    for col in ("figure", "value", "target", "met"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for key, target, met in (
        ("throughput_ratio", f">= {t['throughput_ratio_min']}", t["throughput_ratio_met"]),
        ("verify_fraction", f"<= {t['verify_fraction_max']}", t["verify_fraction_met"]),
        ("detection_rate", f">= {t['detection_rate_min']}", t["detection_rate_met"]),
        ("false_positives", f"<= {t['false_positives_max']}", t["false_positives_met"]),
    ):
        table.add_row(key, str(result[key]), target, str(met))
    table.add_row("final_accuracy", str(result["final_accuracy"]), "", "")
    table.add_row("local_accuracy", str(result["local_accuracy"]), "", "")
    table.add_row("slashed", str(result["slashed"]), "True", str(result["slashed"]))
    out.print(table)


@bench_app.command("dispatch")
def bench_dispatch(
    as_json: JsonFlag = False,
    latency_jobs: Annotated[int, typer.Option(help="Jobs timed one at a time.")] = 1000,
    throughput_jobs: Annotated[int, typer.Option(help="Jobs per throughput run.")] = 3000,
    batch_seconds: Annotated[
        float, typer.Option(help="Local compute time of the batch, seconds.")
    ] = 2.0,
    ray: Annotated[bool, typer.Option(help="Run the Ray comparison (idlegrid[bench]).")] = True,
) -> None:
    """Latency and jobs/s of tiny signed jobs through real providers, a batch, and Ray."""
    from .bench import run_dispatch

    result = run_dispatch(
        latency_jobs=latency_jobs,
        throughput_jobs=throughput_jobs,
        batch_seconds=batch_seconds,
        ray=ray,
        progress=_progress(not as_json),
    )
    if as_json:
        _print_json(result)
        return
    t = result["targets"]
    table = Table(title=f"Dispatch on loopback ({result['method']['machine']['cores']} cores)")
    for col in ("figure", "value", "target", "met"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    table.add_row(
        "p50_ms", f"{result['p50_ms']:.2f}", f"<= {t['p50_ms_max']}", str(t["p50_ms_met"])
    )
    table.add_row("p99_ms", f"{result['p99_ms']:.2f}", "", "")
    table.add_row(
        "jobs_per_s", f"{result['jobs_per_s']:.0f}", f">= {t['jobs_per_s_min']:.0f}",
        str(t["jobs_per_s_met"]),
    )  # fmt: skip
    table.add_row("jobs_per_s_4", f"{result['jobs_per_s_4']:.0f}", "", "")
    table.add_row(
        "batch_ratio", f"{result['batch_ratio']:.3f}", f"<= {t['batch_ratio_max']}",
        str(t["batch_ratio_met"]),
    )  # fmt: skip
    ray_figures = result["ray"]
    if "error" in ray_figures:
        table.add_row("ray", ray_figures["error"], "", "")
    else:
        for kind in ("task", "actor"):
            r = ray_figures[kind]
            table.add_row(f"ray {kind} p50_ms / jobs_per_s", f"{r['p50_ms']:.2f} / "
                          f"{r['jobs_per_s']:.0f}", "", "")  # fmt: skip
    out.print(table)


@bench_app.command("health")
def bench_health(
    as_json: JsonFlag = False,
    adds: Annotated[int, typer.Option(help="Chained Add nodes in the model counted.")] = 10_000,
    rows: Annotated[int, typer.Option(help="Rows of the heavy job.")] = 16_384,
    interval_ms: Annotated[float, typer.Option(help="Pause between probes, ms.")] = 10.0,
    backend: Annotated[str, typer.Option(help="anvil (the benchmark) or embedded.")] = "anvil",
) -> None:
    """A busy node's /v1/health latency: counting a big model, running a heavy job."""
    from .bench._health import run_health

    if adds < 1 or rows < 1 or interval_ms < 0:
        raise typer.BadParameter("--adds and --rows must be positive, --interval-ms not negative")
    result = run_health(
        adds=adds, rows=rows, interval_ms=interval_ms, backend=backend,
        progress=_progress(not as_json),
    )  # fmt: skip
    if as_json:
        _print_json(result)
        return
    table = Table(title="/v1/health while the node is busy")
    for col in ("phase", "answers", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right" if col != "phase" else "left")
    for name, p in result["phases"].items():
        table.add_row(name, str(p["answers"]), *(
            "-" if p[k] is None else f"{p[k]:.1f}" for k in ("p50_ms", "p99_ms", "max_ms")
        ))  # fmt: skip
    out.print(table)
    t = result["targets"]
    out.print(f"health_max_ms <= {t['health_max_ms_max']:g}: {t['health_max_ms_met']}")


@bench_app.command("explorer")
def bench_explorer(
    as_json: JsonFlag = False,
    redemptions: Annotated[int, typer.Option(help="Vouchers redeemed in the history.")] = 100_000,
    channels: Annotated[int, typer.Option(help="Channels they are spread over.")] = 2_000,
    providers: Annotated[int, typer.Option(help="Providers the channels pay.")] = 200,
    repeats: Annotated[int, typer.Option(help="Calls of each view timed.")] = 10,
) -> None:
    """The explorer's views on a long synthetic history: overview, providers, a provider."""
    from .bench._explorer import run_explorer_bench

    if min(redemptions, channels, providers, repeats) < 1 or providers > channels:
        raise typer.BadParameter("every count must be 1 or more, and providers <= channels")
    result = run_explorer_bench(
        redemptions=redemptions, channels=channels, providers=providers, repeats=repeats,
        progress=_progress(not as_json),
    )  # fmt: skip
    if as_json:
        _print_json(result)
        return
    for key in ("overview_ms", "overview_kib", "providers_page_ms", "provider_ms",
                "earnings_ms", "index_events_per_s"):  # fmt: skip
        out.print(f"{key}: {result[key]}")


@bench_app.command("fl")
def bench_fl(
    as_json: JsonFlag = False,
    clients: Annotated[int, typer.Option(help="Edge nodes (one Dirichlet part each).")] = 10,
    rounds: Annotated[int, typer.Option(help="Federated rounds of every run.")] = 60,
    epochs: Annotated[int, typer.Option(help="Local epochs a round.")] = 2,
    lr: Annotated[float, typer.Option(help="Local SGD learning rate.")] = 0.3,
    attackers: Annotated[
        int, typer.Option(help="Poisoning edge nodes in the Byzantine run (sign flip).")
    ] = 2,
) -> None:
    """Federated rounds over edge nodes next to Flower: accuracy, time, SecAgg, DP, attacks."""
    from .bench._fl import bench_fl as run_fl

    def say(msg: str) -> None:
        console.print(f"[dim]•[/dim] {msg}")

    result = run_fl(
        clients=clients, rounds=rounds, epochs=epochs, lr=lr, attackers=attackers, progress=say
    )
    if as_json:
        _print_json(result)
        return
    table = Table(title=f"Federated learning on loopback ({clients} edge nodes, {rounds} rounds)")
    table.add_column("figure")
    table.add_column("alpha 0.5", justify="right")
    table.add_column("alpha 0.1", justify="right")
    skewed = result["alpha_0_1"]
    for key in (
        "accuracy", "flower_accuracy", "centralized_accuracy", "rounds_to_target",
        "flower_rounds_to_target", "seconds_per_round", "flower_seconds_per_round",
        "bytes_per_client_round",
    ):  # fmt: skip
        table.add_row(key, str(result[key]), str(skewed[key]))
    for key in (
        "secagg_overhead", "secagg_overhead_heavy", "byzantine_drop", "fedavg_attacked_accuracy",
        "dp_epsilon", "dp_accuracy",
    ):  # fmt: skip
        table.add_row(key, str(result[key]), "")
    out.print(table)
    for name, met in result["targets"].items():
        out.print(f"{name}: {met}")


@app.command("rewards")
def rewards(
    address: Annotated[
        str | None, typer.Argument(help="Whose earnings (default: the account's).")
    ] = None,
    claim: Annotated[
        bool,
        typer.Option(
            "--claim",
            help="Claim what the chain owes ADDRESS: its postings' amounts and data "
            "royalties (anyone may send those), and its trainer royalties (its own key).",
        ),
    ] = False,
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """What an address earned as provider, oracle provider, data contributor (rewards and
    royalties) and trainer (royalties), from the chain; --claim claims what is due."""
    from .chain import OracleClient, RewardPoolClient
    from .protocol import checksum

    key, ledger = _identity(network, account, keystore, default=0)
    who = checksum(address) if address is not None else key.address
    pool = ledger.client("rewards", RewardPoolClient)
    start = ledger.deployment.start_block
    due = _rewards_due(pool, who, start)
    claimed_now: list[dict[str, Any]] = []
    if claim:
        for posted in due["postings"]:
            if posted["claimable"]:
                tx = pool.claim(
                    bytes.fromhex(posted["run"]), posted["round"], who, posted["amount"],
                    posted["proof"], sender=key,
                )  # fmt: skip
                claimed_now.append({"what": "reward", "run": posted["run"],
                                    "round": posted["round"], "amount": posted["amount"],
                                    "tx": tx.tx_hash})  # fmt: skip
        for royalty in due["royalties"]:
            if royalty["claimable"] > 0:
                tx = pool.claim_royalty(
                    bytes.fromhex(royalty["model"]), royalty["tree"], who, sender=key
                )
                claimed_now.append({"what": "data royalty", "model": royalty["model"],
                                    "amount": royalty["claimable"], "tx": tx.tx_hash})  # fmt: skip
        owed = pool.owed(who)
        if owed and who == key.address:
            tx = pool.withdraw_royalties(sender=key)
            claimed_now.append({"what": "trainer royalty", "amount": owed, "tx": tx.tx_hash})
        due = _rewards_due(pool, who, start)
    head = ledger.backend.block_number()
    claims = pool.logs("Claimed", start, head, contributor=who)
    royalty_claims = pool.logs("RoyaltyClaimed", start, head, contributor=who)
    withdrawn = pool.logs("RoyaltiesWithdrawn", start, head, account=who)
    record = ledger.market.record(who)
    oracle = ledger.client("oracle", OracleClient) if "oracle" in ledger.clients else None
    doc_out = {
        "address": who,
        "provider": {"earned": record.earned, "jobs": record.jobs,
                     "market_balance": ledger.market.balance_of(who)},
        "oracle_owed": oracle.owed(who) if oracle is not None else 0,
        "data_contributor": {
            "claimed": sum(int(c["amount"]) for _, c in claims),
            "claims": [{"run": "0x" + bytes(c["run"]).hex(), "round": int(c["round"]),
                        "amount": int(c["amount"])} for _, c in claims],
            "claimable": sum(p["amount"] for p in due["postings"] if p["claimable"]),
            "waiting": sum(p["amount"] for p in due["postings"] if p["waiting"]),
            "royalties_claimed": sum(int(c["amount"]) for _, c in royalty_claims),
            "royalties_claimable": sum(r["claimable"] for r in due["royalties"]),
        },
        "trainer": {
            "royalties_owed": pool.owed(who),
            "royalties_withdrawn": sum(int(w["amount"]) for _, w in withdrawn),
        },
        "claimed_now": claimed_now,
        "wallet": ledger.token.balance_of(who),
    }  # fmt: skip
    if as_json:
        _print_json(doc_out)
        return
    out.print(f"{who}")
    out.print(f"as provider: earned {_tokens(record.earned)} for {record.jobs} jobs "
              f"(market balance {_tokens(doc_out['provider']['market_balance'])})")  # fmt: skip
    out.print(f"as oracle provider: {_tokens(doc_out['oracle_owed'])} to withdraw")
    dc = doc_out["data_contributor"]
    out.print(
        f"as data contributor: {_tokens(dc['claimed'])} claimed in {len(dc['claims'])} "
        f"claim(s), {_tokens(dc['claimable'])} to claim now, {_tokens(dc['waiting'])} in "
        f"challenge windows; royalties {_tokens(dc['royalties_claimed'])} claimed, "
        f"{_tokens(dc['royalties_claimable'])} to claim"
    )
    tr = doc_out["trainer"]
    out.print(
        f"as trainer: royalties {_tokens(tr['royalties_withdrawn'])} withdrawn, "
        f"{_tokens(tr['royalties_owed'])} to withdraw"
    )
    for c in claimed_now:
        out.print(f"claimed now: {c['what']}, {_tokens(c['amount'])}")


def _rewards_due(pool: Any, who: str, start: int) -> dict[str, list[dict[str, Any]]]:
    """The postings that name ``who`` (each with its amount, proof and whether it can be
    claimed now or is still in its challenge window) and the data royalties of their
    models (what ``who`` may claim of each), read from the chain."""
    now = pool.backend.next_timestamp()
    window, period = pool.challenge_window(), pool.claim_period()
    postings: list[dict[str, Any]] = []
    royalties: list[dict[str, Any]] = []
    for posted in pool.all_postings(start):
        amount = posted.amounts.get(who)
        if amount is None:
            continue
        state = pool.posting(posted.run, posted.round)
        opens = state.posted_at + window
        done = pool.claimed(posted.run, posted.round, who)
        tree = posted.tree()
        postings.append({
            "run": posted.run.hex(), "round": posted.round, "amount": amount,
            "proof": tree.proof(who),
            "claimable": not done and not state.expired and opens <= now < opens + period,
            "waiting": not done and now < opens,
        })  # fmt: skip
        ref = pool.round_of(posted.model)
        if ref == (posted.run, posted.round) and now >= opens:  # the model's own posting
            data = pool.royalties_of(posted.model)
            entitled = data.received * amount // tree.total
            royalties.append({
                "model": posted.model.hex(), "tree": tree,
                "claimable": entitled - pool.royalty_claimed(posted.model, who),
            })  # fmt: skip
    return {"postings": postings, "royalties": royalties}


@bench_app.command("rewards")
def bench_rewards(
    as_json: JsonFlag = False,
    clients: Annotated[int, typer.Option(help="Clients (one Dirichlet part each).")] = 10,
    rounds: Annotated[int, typer.Option(help="Federated rounds of every run.")] = 8,
    seeds: Annotated[
        int, typer.Option(min=1, help="Seeds (partitions and training) the figures average.")
    ] = 10,
    players: Annotated[
        int | None,
        typer.Option(min=1, help="Clients that play each game in turn (default: all)."),
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(help="Also play the games in secure runs (paid from aggregates only)."),
    ] = False,
) -> None:
    """Data contributors' rewards: what free riders, noisy labels, duplicates and sybils earn."""
    from .bench._rewards import bench_rewards as run_rewards

    def say(msg: str) -> None:
        console.print(f"[dim]•[/dim] {msg}")

    result = run_rewards(
        clients=clients, rounds=rounds, seeds=seeds, players=players, secure=secure, progress=say
    )
    if as_json:
        _print_json(result)
        return
    for key in (
        "free_rider_share", "noisy_vs_clean", "noisy30_vs_clean", "sybil_gain",
        "padded_sybil_gain", "duplicate_gain", "rank_correlation", "loo_agreement",
        "loo_single_agreement", "overhead", "rule_max_diff", "claim_gas",
    ):  # fmt: skip
        spread = result["spread"].get(key)
        sd = f" (sd {spread['sd']:.3f} over {seeds} seeds)" if spread and seeds > 1 else ""
        out.print(f"{key}: {result[key]}{sd}")
    for name, met in result["targets"].items():
        out.print(f"{name}: {met}")
    per_round = result["per_round"]
    out.print("payout: round (each round's part, as a secure run is paid):")
    for key in ("free_rider_share", "noisy_vs_clean", "noisy30_vs_clean", "sybil_gain",
                "padded_sybil_gain", "duplicate_gain", "rank_correlation"):  # fmt: skip
        out.print(f"  {key}: {per_round[key]}")
    if secure:
        out.print("secure runs (paid from each round's aggregate only):")
        for key in ("free_rider_share", "noisy_vs_clean", "noisy30_vs_clean", "sybil_gain",
                    "duplicate_gain", "rank_correlation", "overhead"):  # fmt: skip
            out.print(f"  {key}: {result['secure'][key]}")


@bench_app.command("oracle")
def bench_oracle(
    as_json: JsonFlag = False,
    requests: Annotated[int, typer.Option(help="Requests measured, honest and with a liar.")] = 10,
    zk_requests: Annotated[int, typer.Option(help="Zero-knowledge requests measured.")] = 3,
    providers: Annotated[int, typer.Option(help="Provider nodes on the devnet.")] = 4,
) -> None:
    """The oracle on a devnet: gas and latency of a quorum request, then with a liar."""
    from .bench._oracle import bench_oracle as run_oracle

    def say(msg: str) -> None:
        console.print(f"[dim]•[/dim] {msg}")

    result = run_oracle(
        requests=requests, zk_requests=zk_requests, providers=providers, progress=say
    )
    if as_json:
        _print_json(result)
        return
    burst, alone, wrong = result["burst"], result["alone"], result["with_wrong_provider"]
    for key in ("gas_per_request", "request_gas", "fulfill_gas_per_request", "requests_per_report"):
        out.print(f"{key}: {burst[key]} (one liar: {wrong[key]})")
    for key in ("gas_per_request", "latency_blocks", "latency_s"):
        out.print(f"alone, {key}: {alone[key]}")
    for key in ("liar_named_outlier", "liar_disputed", "liar_found_wrong", "liar_slashed"):
        out.print(f"one liar, {key}: {wrong[key]}")
    for key in ("gas_zk", "prove_s", "quantisation_error"):
        out.print(f"{key}: {result[key]}")
    for name, met in result["targets"].items():
        out.print(f"{name}: {met}")


posting_app = typer.Typer(
    help="A federated run's reward posting: challenge it, post it from its inputs, or settle "
    "the rounds a killed coordinator held.",
)
app.add_typer(posting_app, name="posting")
InputsArg = Annotated[
    Path, typer.Argument(help="The round's published inputs (round-NNNN-inputs.npz).")
]


def _round_inputs(path: Path) -> tuple[bytes, Any]:
    from .fl import read_round_inputs

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from exc
    return data, read_round_inputs(data)


@posting_app.command("challenge")
def posting_challenge(
    inputs: InputsArg,
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the ruling.")] = 600.0,
    as_json: JsonFlag = False,
) -> None:
    """Challenge the posting of the round INPUTS describe, in its window (bond locked)."""
    from dataclasses import asdict

    data, parsed = _round_inputs(inputs)  # a bad file is refused before the chain is touched
    recomputed = parsed.amounts()
    from .client import Client

    key, ledger = _identity(network, account, keystore, default=0)
    with Client(key, ledger) as client:
        ruling = client.challenge_posting(parsed.run, parsed.round, data, timeout_s=timeout)
    doc = {**asdict(ruling), "recomputed": recomputed}
    if as_json:
        _print_json(doc)
        return
    out.print(
        f"round {parsed.round} of run 0x{parsed.run.hex()[:12]}…: {ruling.outcome} "
        f"({ruling.wrong_votes} wrong, {ruling.right_votes} right); you got "
        f"{_tokens(ruling.challenger_paid)} back"
    )


@posting_app.command("post")
def posting_post(
    inputs: InputsArg,
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Post the round INPUTS describe from them (its coordinator, after a voided posting)."""
    _data, parsed = _round_inputs(inputs)  # a bad file is refused before the chain is touched
    from .client import Client
    from .fl import post_contributions

    key, ledger = _identity(network, account, keystore, default=0)
    with Client(key, ledger) as client:
        amounts = post_contributions(client, parsed)
    if as_json:
        _print_json({"run": parsed.run.hex(), "round": parsed.round, "amounts": amounts})
        return
    for who, amount in amounts.items():
        out.print(f"{who}  {_tokens(amount)}")


@posting_app.command("settle")
def posting_settle(
    output: Annotated[
        Path, typer.Argument(help="The killed run's output directory (idlegrid fl start --output).")
    ],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Settle a payout: run run whose coordinator was killed before its end, from the
    rounds it held in OUTPUT/held: fund the run's pool, post the netted contributions
    for the last held round and publish OUTPUT/run-inputs.npz (its coordinator only)."""
    from .client import Client
    from .fl import read_held, settle_held

    held = read_held(output)  # a bad directory is refused before the chain is touched
    key, ledger = _identity(network, account, keystore, default=4)
    with Client(key, ledger) as client:
        amounts, inputs = settle_held(client, output, held)
    if as_json:
        _print_json({"run": inputs.run.hex(), "round": inputs.round,
                     "rounds": [r.round for r in inputs.rounds], "amounts": amounts,
                     "inputs": str(output / "run-inputs.npz")})  # fmt: skip
        return
    out.print(
        f"run 0x{inputs.run.hex()[:12]}…: rounds {[r.round for r in inputs.rounds]} settled "
        f"for round {inputs.round}; inputs in {output / 'run-inputs.npz'}"
    )
    for who, amount in amounts.items():
        out.print(f"{who}  {_tokens(amount)}")


edge_app = typer.Typer(help="Edge nodes: private data that never leaves, federated rounds.")
app.add_typer(edge_app, name="edge")
fl_app = typer.Typer(help="Federated training over edge nodes (the sponsor coordinates, pays).")
app.add_typer(fl_app, name="fl")
oracle_app = typer.Typer(help="The AI oracle: a registered model's answer for a contract.")
app.add_typer(oracle_app, name="oracle")


@oracle_app.command("zk-setup")
def oracle_zk_setup(
    model: Annotated[Path, typer.Argument(help="The registered model's ONNX file.")],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a model answerable in zero-knowledge mode, once, locally and offline: ezkl's
    circuit, SRS and keys (under $IDLEGRID_CACHE/zk/SHA256), the generated verifier
    compiled with npm's solc, deployed with an adapter and linked in the oracle (by the
    model's registrant)."""
    import hashlib

    from .chain import ModelRegistryClient
    from .oracle import deploy_zk_verifier, zk_dir, zk_setup

    try:
        data = model.read_bytes()
    except OSError as exc:
        raise IdlegridError(f"cannot read {model}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).digest()
    key, ledger = _identity(network, account, keystore, default=0)
    models = ledger.client("models", ModelRegistryClient)
    console.print(f"setting model {digest.hex()[:16]} up (circuit, SRS, keys, verifier)")
    artifacts = zk_setup(data, zk_dir(digest))
    adapter = deploy_zk_verifier(ledger.backend, artifacts, digest, sender=key)
    models.link_verifier(digest, adapter, sender=key)
    doc = {
        "model": digest.hex(), "verifier": adapter, "directory": str(artifacts.directory),
        "input_scale": artifacts.input_scale, "output_scale": artifacts.output_scale,
        "logrows": artifacts.logrows, "setup_s": artifacts.setup_s,
    }  # fmt: skip
    if as_json:
        _print_json(doc)
    else:
        out.print(f"model {digest.hex()} answers in zero-knowledge mode: verifier {adapter}")
        out.print(f"keys in {artifacts.directory} (scale 2^{artifacts.input_scale}, "
                  f"2^{artifacts.logrows} rows, {artifacts.setup_s} s)")  # fmt: skip


@oracle_app.command("ask")
def oracle_ask(
    model: Annotated[str, typer.Argument(help="The sha256 of a registered model.")],
    input: Annotated[str, typer.Option("--input", help="One row of features: 0.2,0.1,0.3")],
    fee: Annotated[float, typer.Option(help="Tokens for the answering providers.")] = 1.0,
    mode: Annotated[int, typer.Option(help="0: a quorum of providers; 1: a zk proof.")] = 0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 120.0,
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask the oracle by hand, as a contract would: pay the fee, wait for the quorum's
    answer (the caller is the consumer; an account gets no callback, the answer is read
    from the oracle's Fulfilled event)."""

    from .chain import TOKEN, OracleClient, from_fixed, to_fixed

    digest = _sha256_arg(model, "the model hash")
    try:
        row = [float(v) for v in input.split(",") if v.strip()]
    except ValueError as exc:
        raise IdlegridError(f"--input is numbers separated by commas: {exc}") from exc
    key, ledger = _identity(network, account, keystore, default=0)
    oracle = ledger.client("oracle", OracleClient)
    amount = int(fee * TOKEN)
    ledger.token.approve(oracle.address, amount, sender=key)
    req, _ = oracle.request(digest, to_fixed(row), mode=mode, fee=amount, sender=key)
    console.print(f"request {req.request_id}: {req.k} provider(s) drawn, waiting for the answer")
    log = oracle.wait_fulfilled(req.request_id, req.block, timeout_s=wait, poll_s=0.5)
    if log is None:
        raise IdlegridError(
            f"request {req.request_id} was not answered within {wait:.0f} s; after its "
            f"deadline its fee can be refunded (OracleClient.cancel)"
        )
    found = log["args"]
    output = [float(v) for v in from_fixed(found["output"])]
    if as_json:
        _print_json({"request_id": req.request_id, "output": output,
                     "paid": list(found["paid"]), "fee": amount})  # fmt: skip
    else:
        out.print(f"answer to request {req.request_id}: {output}")
        out.print(f"answered by {', '.join(found['paid'])}")


@edge_app.command("start")
def edge_start(
    data: Annotated[
        Path, typer.Option("--data", help="Directory of NAME.npz data sets (x, y) kept here.")
    ],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one).")] = 0,
    public_url: Annotated[str | None, typer.Option(help="URL registered on chain.")] = None,
    price: Annotated[
        int, typer.Option(help="Tokens (wei) per compute unit (1 unit = 1 FLOP).")
    ] = 10**9,
    stake: Annotated[float, typer.Option(help="Stake in tokens.")] = 100.0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Blobs and journal (default .idlegrid/edge-ADDRESS).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Concurrent jobs (worker processes).")] = 1,
    job_timeout: Annotated[float, typer.Option(help="Wall-time limit per job, seconds.")] = 300.0,
    redeem_after: Annotated[
        float, typer.Option(help="Redeem a voucher once it is this many seconds old.")
    ] = 30.0,
    cheat_rate: Annotated[
        float,
        typer.Option(help="TESTING AID: poison this fraction of rounds (0: honest)."),
    ] = 0.0,
    cheat_mode: Annotated[
        str, typer.Option(help="TESTING AID: how to poison: sign-flip (send the update reversed).")
    ] = "sign-flip",
    log_json: LogJsonOpt = False,
    log_level: LogLevelOpt = "info",
) -> None:
    """Run an edge node: serve federated rounds on local data that never leaves."""
    from .chain import TOKEN, free_port
    from .edge import Egress, build_edge_node, serve_edge_node
    from .provider import NodeConfig

    fmt, say = _node_logging(log_json, log_level)
    key, ledger = _identity(network, account, keystore, default=1)
    config = NodeConfig(
        data_dir=data_dir or Path(".idlegrid") / f"edge-{key.address.lower()}",
        host=host,
        port=port or free_port(),
        public_url=public_url,
        unit_price=price,
        stake=int(stake * TOKEN),
        workers=workers,
        job_timeout_s=job_timeout,
        workloads=("fl",),
        redeem_max_age_s=redeem_after,
        upload_allowance_bytes=64 * 2**20,
        cheat_rate=cheat_rate,
        cheat_mode=cheat_mode,
    )
    if cheat_rate and fmt == "text":  # the node logs it too
        console.print(
            f"[bold red]THIS EDGE NODE POISONS[/bold red] (a testing aid): {cheat_mode} on "
            f"{cheat_rate:.0%} of rounds"
        )
    egress = Egress.from_env()
    node = build_edge_node(key, ledger, config, data.resolve(), egress=egress)
    serve_edge_node(node, say=say, own_logging=True)


@edge_app.command("infer")
def edge_infer(
    data: Annotated[Path, typer.Option("--data", help="The edge node's data directory.")],
    dataset: Annotated[str, typer.Option(help="The local data set (NAME of NAME.npz).")],
    model: Annotated[str, typer.Option(help="sha256 of a registered model in the model store.")],
    output: Annotated[Path, typer.Option(help="Where the predictions go (.npy, kept here).")],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    store: StoreOpt = None,
    receipt: Annotated[
        Path | None, typer.Option(help="Write the signed usage receipt here (JSON).")
    ] = None,
) -> None:
    """Run a registered model on local data: predictions stay here, a usage receipt
    (model, rows, units, the predictions' hash, signed) is what may leave."""
    import json as _json

    from .chain import ModelRegistryClient
    from .client import ModelStore, parse_model_hash
    from .edge import Egress, guard_web3, infer_local, scan_datasets
    from .workloads._kind_fl import read_local_dataset

    key, ledger = _identity(network, account, keystore, default=1)
    w3 = getattr(ledger.backend, "_w3", None)
    if w3 is not None and hasattr(w3.provider, "encode_rpc_request"):
        guard_web3(w3, Egress.from_env())
    digest = parse_model_hash(model)
    if digest is None:
        raise InvalidInput(f"--model is the sha256 of a registered model, not {model!r}")
    found = scan_datasets(data.resolve())
    if dataset not in found:
        raise InvalidInput(f"no data set {dataset!r} in {data}; found {sorted(found) or 'none'}")
    models = ledger.client("models", ModelRegistryClient)
    if not models.registered(bytes.fromhex(digest)):
        raise InvalidInput(f"model {digest} is not registered in the ModelRegistry")
    onnx = (ModelStore(store) if store else ModelStore.default()).get(digest)
    x, _ = read_local_dataset(str(found[dataset].path))
    usage = infer_local(onnx, x, dataset=dataset, account=key, output=output)
    doc = _json.dumps(usage.as_dict(), indent=2)
    if receipt is not None:
        receipt.write_text(doc)
    console.print(f"{usage.rows} rows predicted into {output} (kept here); usage receipt:")
    print(doc)


@fl_app.command("start")
def fl_start(
    spec_file: Annotated[Path, typer.Argument(help="The federated run's spec (YAML).")],
    validation: Annotated[
        Path, typer.Option(help="The sponsor's validation set (.npz with x, y).")
    ],
    output: Annotated[Path, typer.Option(help="Checkpoints, model.onnx and rounds.json.")],
    network: NetworkOpt = Path("devnet.json"),
    account: AccountOpt = None,
    keystore: KeystoreOpt = None,
    register: Annotated[
        bool, typer.Option(help="Register every round's model in the ModelRegistry.")
    ] = True,
    rewards: Annotated[
        float,
        typer.Option(
            help="Tokens for the data contributors, posted to the run's RewardPool by "
            "contribution: at the run's end (the spec's payout: run, a clear run's "
            "default) or each round (payout: round) (0: none)."
        ),
    ] = 0.0,
    node: Annotated[
        list[str] | None,
        typer.Option(
            help="An edge node's address the run may sample; repeat it for each (default: "
            "every edge node holding the data set). Naming the sites is what keeps a "
            "stranger's extra identities out of a secure run (docs/federated.md)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Coordinate a federated run over the edge nodes holding its data set, paying them."""
    import json as _json

    from rich.live import Live
    from rich.table import Table

    from .client import Client
    from .fl import load_spec
    from .protocol import checksum
    from .workloads._kind_fl import read_local_dataset

    nodes = None if node is None else [checksum(a) for a in node]  # before the chain
    spec = load_spec(spec_file)
    x_val, y_val = read_local_dataset(str(validation))
    key, ledger = _identity(network, account, keystore, default=4)
    table = Table(title=f"federated run: {spec.strategy.name}, {spec.rounds} rounds")
    for col in ("round", "accuracy", "loss", "participants", "dropped", "refused", "ε", "s",
                "rewarded"):  # fmt: skip
        table.add_column(col, justify="right")
    client = Client(key, ledger, timeout_s=spec.deadline_s + 30)
    with client, Live(table, console=console, transient=as_json) as live:

        def show(r: Any) -> None:
            table.add_row(
                str(r.round), f"{r.accuracy:.2%}", f"{r.loss:.4f}", str(len(r.participants)),
                str(len(r.dropped)), str(len(r.rejected)),
                "-" if r.epsilon is None else f"{r.epsilon:.2f}", f"{r.seconds:.1f}",
                str(len(r.rewards)),
            )  # fmt: skip
            live.refresh()

        if rewards < 0 or rewards != rewards:
            raise InvalidInput("--rewards is a number of tokens, 0 or more")
        result = client.federate(
            spec, (x_val, y_val), output=output, register=register, on_round=show,
            rewards=round(rewards * 10**18), nodes=nodes,
        )  # fmt: skip
    if as_json:
        print(_json.dumps(result.summary(), indent=2))
    else:
        console.print(
            f"run {result.run[:16]}…: {result.stopped}; accuracy {result.accuracy:.2%}; "
            f"model in {output / 'model.onnx'}"
        )
        if result.rewards:
            console.print(
                f"settled at the run's end: {_tokens(sum(result.rewards.values()))} to "
                f"{len(result.rewards)} contributor(s), inputs in {output / 'run-inputs.npz'}"
            )


@app.command("explorer")
def explorer(
    network: NetworkOpt = Path("devnet.json"),
    index: Annotated[
        Path | None,
        typer.Option(
            help="The index file (default: .idlegrid/explorer.sqlite beside the network "
            "file, rebuilt when it is of another chain)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    interval: Annotated[float, typer.Option(help="Seconds between index polls.")] = 1.0,
) -> None:
    """Serve the network explorer: nodes, jobs, money, models, runs and oracle requests,
    live, built from the chain by the indexer alone."""
    if not 0.05 <= interval <= 3600:
        raise typer.BadParameter("interval must be 0.05..3600 seconds")
    from .devnet import load_devnet
    from .explorer import serve_explorer

    info = load_devnet(network)
    path = index or info.path.parent / ".idlegrid" / "explorer.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    serve_explorer(
        info.connect(),
        info.deployment,
        path,
        host=host,
        port=port,
        interval=interval,
        ready=lambda url: console.print(f"explorer: {url} (index {path}); Ctrl-C to stop"),
        rebuild=index is None,  # the default index is the explorer's own cache
    )


def main() -> None:
    """Entry point: run the app, turning idlegrid errors into a one-line message and exit 2."""
    try:
        app()
    except IdlegridError as exc:
        console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
