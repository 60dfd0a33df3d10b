"""Refuse ONNX models that point at files: every tensor must travel inside the model.

An ONNX tensor may keep its bytes in an external file (``data_location: EXTERNAL``
with a ``location`` entry). onnx's checker and onnxruntime refuse absolute paths and
``..``, but resolve a relative ``location`` against the directory of the model, which
for a model loaded from bytes is the process's working directory: a peer's model
could read any file there back as its output. A model from a peer is bytes and
nothing else, so a model that references external data anywhere is refused.

"Anywhere" is every ``TensorProto`` in the message tree: initializers, sparse
initializers (values and indices), tensor attributes (``t``, ``tensors``,
``sparse_tensor``, ``sparse_tensors``), the subgraphs of ``If``, ``Loop`` and
``Scan`` at any depth, model-local functions and training graphs. The walk goes
over the protobuf fields themselves rather than a list of known places, so a
field that onnx adds later is covered too.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import ModelProto, TensorProto

from .._exceptions import InvalidInput

__all__ = ["external_tensors", "refuse_external_data"]


def external_tensors(model: ModelProto) -> list[str]:
    """Names of the tensors in ``model`` whose data lives outside it (unnamed: ``"?"``)."""
    found: list[str] = []
    stack: list[Message] = [model]
    while stack:
        message = stack.pop()
        if isinstance(message, TensorProto):
            if message.data_location == TensorProto.EXTERNAL or len(message.external_data):
                found.append(message.name or "?")
            continue  # a tensor holds no other tensor
        for field, value in message.ListFields():
            if field.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            if field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)
    return found


def refuse_external_data(model: ModelProto) -> None:
    """``InvalidInput`` if any tensor of ``model`` references external data."""
    found = external_tensors(model)
    if found:
        names = ", ".join(repr(n) for n in found[:5]) + (", ..." if len(found) > 5 else "")
        raise InvalidInput(
            f"the model references external data (tensor {names}); "
            "a model must carry every tensor inside it"
        )
