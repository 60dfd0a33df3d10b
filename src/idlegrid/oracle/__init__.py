"""The oracle's provider side: watch the oracle contract's requests, answer with the
model, agree with the other committee members off chain, deliver in one transaction
(``docs/oracle.md``)."""

from ._http import AnswerMessage, HttpSend, parse_answer
from ._node import attach_oracle, relay_loop
from ._relay import MAX_OUTPUT, OracleRelay, run_model

__all__ = [
    "MAX_OUTPUT",
    "AnswerMessage",
    "HttpSend",
    "OracleRelay",
    "attach_oracle",
    "parse_answer",
    "relay_loop",
    "run_model",
]
