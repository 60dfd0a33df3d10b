"""Reputation from indexed chain events: tokens paid by distinct clients, disputes, slashes.

A pure function of rows every index holds (:class:`ProviderHistory`), computed in
integers only, so every indexer of the same chain gives every provider the same
:class:`Reputation`, bit for bit.

What counts, and why:

* **Tokens actually paid, by each client.** A redeemed voucher moves tokens from
  the client's deposit to the provider: that is the one thing the contribution
  record proves. A redemption that pays nothing adds nothing, and the jobs and
  units a voucher names are never read (they are whatever the client signed).
* **Net of what the provider gave that client.** Tokens that flowed from the
  provider to a client (token transfers, and vouchers the provider paid that
  client as *its* client) are subtracted from what that client paid back: a
  provider that funds a second address and has it pay the provider earns
  nothing. A provider is never its own client.
* **Concave in each client, capped.** A client's net payment counts as the
  square root of the whole tokens in it, at most ``client_cap`` tokens' worth,
  so one client cannot dominate: four clients paying 25 tokens count twice as
  much as one paying 100.
* **Disputes and slashes.** Each dispute won adds a little (at most
  ``max_disputes``); a slash or a dispute lost ranks the provider below any
  newcomer, whatever it earned before. A referee's seat left without a vote
  (slashed a little by the dispute contract) takes a point, and its slash is
  not counted as an offence.

What it cannot see: sybil clients funded through an address the index does not
link to the provider (an exchange, a chain of fresh wallets). Such a provider
still buys reputation, but only with real gas per sybil and with tokens that
sit in channels, and the square root and cap bound what each sybil buys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._types import TOKEN

__all__ = ["DEFAULT_RULES", "ProviderHistory", "Reputation", "ReputationRules", "score_reputation"]

#: reputation points are counted in thousandths
MILLI = 1000


@dataclass(frozen=True)
class ReputationRules:
    """How a provider's history is weighed; the defaults are what clients use."""

    #: the size of one whole token, in base units
    unit: int = TOKEN
    #: whole tokens of one client's net payments that count at most
    client_cap: int = 100
    #: milli-points per dispute won
    dispute_points: int = 1000
    #: disputes won that count at most (a provider can stage disputes against itself)
    max_disputes: int = 5
    #: milli-points taken per offence (a slash or a dispute lost); the score is minus this
    penalty_points: int = 5000
    #: milli-points taken per dispute it sat on as a referee without voting
    absence_points: int = 1000


#: the rules clients use
DEFAULT_RULES = ReputationRules()


@dataclass(frozen=True)
class ProviderHistory:
    """What the index knows of one provider that reputation reads."""

    provider: str
    #: client -> tokens it paid the provider through redeemed vouchers
    paid: Mapping[str, int] = field(default_factory=dict)
    #: client -> tokens that flowed from the provider to that client
    funded: Mapping[str, int] = field(default_factory=dict)
    #: times stake was slashed, and the tokens taken
    slashes: int = 0
    slashed: int = 0
    disputes_won: int = 0
    disputes_lost: int = 0
    #: resolved disputes it sat on as a referee without voting (each slashed a little)
    absences: int = 0


@dataclass(frozen=True)
class Reputation:
    """A provider's standing. ``points`` are thousandths: negative after an offence,
    zero for a newcomer (or a self-dealer), growing with paying clients."""

    provider: str
    points: int
    #: distinct clients whose net payments count
    clients: int
    #: tokens counted: paid by other clients, net of what the provider gave them
    counted: int
    #: tokens paid by the provider itself or given to its clients first
    discounted: int
    disputes_won: int
    disputes_lost: int
    slashed: int

    @property
    def penalised(self) -> bool:
        """Slashed or lost a dispute."""
        return self.points < 0


def score_reputation(
    history: ProviderHistory, rules: ReputationRules = DEFAULT_RULES
) -> Reputation:
    """The reputation of ``history.provider`` under ``rules``."""
    provider = history.provider.lower()
    cap = rules.client_cap * rules.unit
    counted = discounted = clients = points = 0
    for client in sorted(history.paid):
        paid = history.paid[client]
        if paid <= 0:
            continue
        net = 0 if client.lower() == provider else max(paid - history.funded.get(client, 0), 0)
        counted += net
        discounted += paid - net
        # sqrt of whole tokens, in milli-points: isqrt(tokens * 10**6)
        client_points = math.isqrt(min(net, cap) * MILLI * MILLI // rules.unit)
        if client_points > 0:
            clients += 1
            points += client_points
    points += min(max(history.disputes_won, 0), rules.max_disputes) * rules.dispute_points
    # absences cost points but never make a provider worse than a newcomer; the
    # referee's small slash that goes with each is not an offence
    points = max(points - max(history.absences, 0) * rules.absence_points, 0)
    offences = max(history.slashes - history.absences, history.disputes_lost, 0)
    if offences > 0:
        points = -rules.penalty_points * offences
    return Reputation(
        provider=history.provider,
        points=points,
        clients=clients,
        counted=counted,
        discounted=discounted,
        disputes_won=history.disputes_won,
        disputes_lost=history.disputes_lost,
        slashed=history.slashed,
    )
