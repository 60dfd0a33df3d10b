"""The pipe between the executor and its workers: frames, and errors as data.

Every message is a frame, a fixed header and then a body::

    kind u8 | meta u16 | job id u64 | body length u64 | body

    RUN    parent -> worker   meta = length of the task name; body = task name + payload
    READY  worker -> parent   once, after the worker applied its limits; body = its pid
    OK     worker -> parent   body = CPU seconds (f64) + the task's result
    ERROR  worker -> parent   body = CPU seconds (f64) + the task's exception as JSON
                              (see RemoteError)

The CPU seconds are what the job used in the worker, every thread counted
(``time.process_time``): the node bills metered and failed jobs by them.

Errors cross as data, never as pickles, so the parent unpickles nothing a task made.
It rebuilds an idlegrid error as the nearest class it has loaded, so a task's
``InvalidInput`` is an ``InvalidInput`` to the caller; anything else becomes ``JobFailed``.
"""

from __future__ import annotations

import contextlib
import json
import struct
import traceback
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .._exceptions import IdlegridError, JobFailed

__all__ = ["CPU", "HEADER", "MAX_MESSAGE", "Kind", "RemoteError"]

HEADER = struct.Struct("!BHQQ")
#: the CPU seconds at the start of an OK or ERROR body
CPU = struct.Struct("!d")
#: characters of an exception's message kept (the rest is cut)
MAX_MESSAGE = 2000
#: characters of a traceback kept (its end: the frame that raised)
MAX_TRACEBACK = 8000

_Scalar = str | int | float | bool | None


class Kind(IntEnum):
    RUN = 1
    READY = 2
    OK = 3
    ERROR = 4


@dataclass(frozen=True)
class RemoteError:
    """An exception raised by a task in a worker, as plain data."""

    #: "module.qualname" of the class and of each base, nearest first ("builtins.ValueError", ...)
    classes: tuple[str, ...]
    message: str
    #: the exception's public attributes that are plain scalars (``reason``, ``digest``, ...)
    attrs: dict[str, _Scalar] = field(default_factory=dict)
    traceback: str = ""

    @classmethod
    def capture(cls, exc: BaseException) -> RemoteError:
        classes = tuple(
            f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__ if c is not object
        )
        attrs = {
            k: v
            for k, v in vars(exc).items()
            if not k.startswith("_") and isinstance(v, str | int | float | bool | None)
        }
        try:
            message = str(exc)
            text = "".join(traceback.format_exception(exc))
        except Exception:  # a task's exception whose __str__ fails
            message, text = f"<unprintable {type(exc).__name__}>", ""
        return cls(classes, _cut(message, MAX_MESSAGE), attrs, text[-MAX_TRACEBACK:])

    def encode(self) -> bytes:
        raw = {
            "classes": self.classes,
            "message": self.message,
            "attrs": self.attrs,
            "tb": self.traceback,
        }
        return json.dumps(raw).encode()

    @classmethod
    def decode(cls, body: bytes) -> RemoteError:
        """The error a worker reported; a report that cannot be read becomes a RuntimeError."""
        try:
            raw: dict[str, Any] = json.loads(body)
            classes = tuple(str(c) for c in raw["classes"]) or ("builtins.Exception",)
            return cls(classes, str(raw["message"]), dict(raw["attrs"]), str(raw["tb"]))
        except (ValueError, KeyError, TypeError) as exc:
            return cls(("builtins.RuntimeError",), f"unreadable error report from a worker: {exc}")

    @property
    def type_name(self) -> str:
        """The class as a reader knows it: ``ValueError``, ``numpy.linalg.LinAlgError``."""
        return self.classes[0].removeprefix("builtins.")

    @property
    def out_of_memory(self) -> bool:
        return "builtins.MemoryError" in self.classes

    def to_exception(self, task: str) -> Exception:
        """The idlegrid error it was (nearest class loaded here), else ``JobFailed``."""
        known = _idlegrid_classes()
        for path in self.classes:
            cls = known.get(path)
            if cls is None:
                continue
            # skip __init__: subclasses take other arguments; args and attributes are restored
            try:
                exc = cls.__new__(cls, self.message)
            except Exception:  # a class with a __new__ of its own: keep looking up the tree
                continue
            for name, value in self.attrs.items():
                with contextlib.suppress(AttributeError):  # a read-only property
                    setattr(exc, name, value)
            if path != self.classes[0]:
                exc.add_note(f"raised as {self.classes[0]}, a class not loaded by the executor")
            exc.add_note(f"raised by task {task} in an executor worker")
            return exc
        return JobFailed(self.type_name, self.message, task=task, traceback=self.traceback)


def _idlegrid_classes() -> dict[str, type[IdlegridError]]:
    found: dict[str, type[IdlegridError]] = {}
    todo: list[type[IdlegridError]] = [IdlegridError]
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return found


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
