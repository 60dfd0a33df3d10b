"""The oracle's provider side: watch the oracle contract's requests, answer with the
model, agree with the other committee members off chain, deliver in one transaction, dispute
the outliers a delivery names (``docs/oracle.md``)."""

from ._challenge import OutlierChallenger
from ._http import AnswerMessage, HttpSend, parse_answer
from ._node import attach_oracle, relay_loop
from ._relay import MAX_OUTPUT, OracleRelay, run_model
from ._zk import ZkArtifacts, deploy_zk_verifier, zk_dir, zk_prove, zk_setup

__all__ = [
    "MAX_OUTPUT",
    "AnswerMessage",
    "HttpSend",
    "OracleRelay",
    "OutlierChallenger",
    "ZkArtifacts",
    "attach_oracle",
    "deploy_zk_verifier",
    "parse_answer",
    "relay_loop",
    "run_model",
    "zk_dir",
    "zk_prove",
    "zk_setup",
]
