"""The `idlegrid` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._exceptions import IdlegridError

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
app.add_typer(devnet_app, name="devnet")
app.add_typer(bench_app, name="bench")

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
def demo(as_json: JsonFlag = False) -> None:
    """Deploy the ledger on the embedded chain and run its whole money loop."""
    from ._demo import run_demo

    result = run_demo(progress=_progress(True))
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
    )
    console.print(
        f"devnet up: {info['rpc_url']} (chain {info['chain_id']}) · "
        f"token {info['contracts']['token']} · {directory / 'devnet.json'}"
    )


@devnet_app.command("down")
def devnet_down(
    directory: Annotated[Path, typer.Option("--dir", help="Where devnet.json is.")] = Path("."),
) -> None:
    """Stop everything `devnet up` started here."""
    from .devnet import devnet_down as down

    pids = down(directory)
    console.print(f"devnet down: stopped {len(pids)} process(es)")


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


def main() -> None:
    """Entry point: run the app, turning idlegrid errors into a one-line message and exit 2."""
    try:
        app()
    except IdlegridError as exc:
        console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
