"""The relay's wire: a committee member's signed answer, sent to the other members'
nodes (``POST /v1/oracle/answers``, a signed request like any other)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from .._exceptions import IdlegridError
from ..chain import OracleAnswer, OracleRequest, RegistryClient
from ..protocol import Account, Domain, sign_request

__all__ = ["AnswerMessage", "HttpSend", "parse_answer"]

log = logging.getLogger("idlegrid.oracle")

_INT256 = 2**255


class AnswerMessage(BaseModel):
    """One member's answer to one request, as it travels between nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: int = Field(ge=1, lt=2**256)
    position: int = Field(ge=0, le=6)
    output: tuple[int, ...] = Field(min_length=1, max_length=16)
    signature: str = Field(pattern=r"^0x[0-9a-f]{130}$")

    def answer(self) -> OracleAnswer:
        from .._exceptions import InvalidInput

        if any(not -_INT256 <= v < _INT256 for v in self.output):
            raise InvalidInput("an output value does not fit in int256")
        return OracleAnswer(self.position, self.output, bytes.fromhex(self.signature[2:]))

    @classmethod
    def of(cls, request_id: int, a: OracleAnswer) -> AnswerMessage:
        return cls(
            request_id=request_id,
            position=a.position,
            output=a.output,
            signature="0x" + a.signature.hex(),
        )


class HttpSend:
    """Hands an answer to each other member's node, at the endpoint it registered."""

    def __init__(
        self, account: Account, domain: Domain, registry: RegistryClient, *, timeout_s: float = 5.0
    ) -> None:
        self.account = account
        self.domain = domain
        self.registry = registry
        self.timeout_s = timeout_s

    def __call__(self, req: OracleRequest, answer: OracleAnswer, to: Sequence[str]) -> None:
        import httpx

        body = AnswerMessage.of(req.request_id, answer).model_dump_json().encode()
        with httpx.Client(timeout=self.timeout_s) as http:
            for address in to:  # each on its own: a dead member does not stop the others
                try:
                    endpoint = self.registry.provider(address).endpoint.rstrip("/")
                    path = "/v1/oracle/answers"
                    signed = sign_request(self.account, self.domain, address, "POST", path, body)
                    r = http.post(
                        endpoint + path,
                        content=body,
                        headers={**signed.headers, "content-type": "application/json"},
                    )
                    if r.status_code != 200:
                        log.warning("oracle: %s refused an answer: %s", address, r.text[:200])
                except (httpx.HTTPError, IdlegridError, OSError) as exc:
                    log.warning("oracle: cannot reach %s: %s", address, exc)


def parse_answer(body: bytes) -> tuple[int, OracleAnswer]:
    """``(request id, answer)`` from a peer's message; InvalidInput if malformed."""
    from .._exceptions import InvalidInput

    try:
        msg = AnswerMessage.model_validate_json(body)
    except ValueError as exc:
        raise InvalidInput(f"not an oracle answer: {str(exc)[:200]}") from exc
    return msg.request_id, msg.answer()
