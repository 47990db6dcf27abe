"""Read the weights of an ONNX file without the `onnx` package.

Every process that loads a model (the app, each batch worker) used to import `onnx`, and with
it `ml_dtypes`: about half a second of start-up, to read a few hundred tensors. An ONNX file is
a protocol-buffers message; this module decodes the few fields the loader needs (the graph's
nodes, their attributes, the stored tensors) straight from the bytes. Field numbers are those
of onnx.proto3 (ModelProto.graph = 7, GraphProto.node = 1 / initializer = 5, …).

Anything malformed (a truncated file, a length past the end, a tensor whose bytes do not fit
its shape) raises `OnnxFormatError`; the loader turns it into a WeightsError.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# TensorProto.DataType values this reader turns into arrays.
_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 11: np.float64}
# Where each of them keeps its values when not in raw_data.
_VALUE_FIELDS = {1: 4, 6: 5, 7: 7, 11: 10}


class OnnxFormatError(ValueError):
    """The bytes are not an ONNX model this reader understands."""


@dataclass
class Node:
    """One graph node: its op type, name, inputs and outputs, and its attributes (ints, lists
    of ints, floats, strings or tensors, by name)."""

    op_type: str = ""
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attributes: dict[str, object] = field(default_factory=dict)


@dataclass
class Graph:
    """The nodes in file order and the stored tensors (initializers) by name."""

    nodes: list[Node]
    tensors: dict[str, np.ndarray]


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise OnnxFormatError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message: an int for varints and
    fixed-width numbers, a memoryview for length-delimited fields."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise OnnxFormatError("a field runs past the end of its message")
            value, pos = buf[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise OnnxFormatError("truncated fixed-width field")
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:
            raise OnnxFormatError(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(wire: int, value: int | memoryview) -> list[int]:
    """A repeated int64 field's values (packed or one at a time)."""
    if wire == 0:
        return [_signed(value)]  # type: ignore[arg-type]
    out, pos, buf = [], 0, value
    while pos < len(buf):  # type: ignore[arg-type]
        v, pos = _varint(buf, pos)  # type: ignore[arg-type]
        out.append(_signed(v))
    return out


def _text(value: int | memoryview) -> str:
    if not isinstance(value, memoryview):
        raise OnnxFormatError("expected a string field")
    return bytes(value).decode("utf-8", errors="replace")


def _tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    dtype = 0
    name = ""
    raw: memoryview | None = None
    values: dict[int, list] = {}
    for number, wire, value in _fields(buf):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            dtype = int(value)  # type: ignore[arg-type]
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = value  # type: ignore[assignment]
        elif number == 14 and value == 1:
            raise OnnxFormatError(f"tensor {name or '?'} keeps its data in an external file")
        elif number in (4, 5, 7, 10):
            values.setdefault(number, []).append((wire, value))
    if dtype not in _DTYPES:
        raise OnnxFormatError(f"tensor {name or '?'} has data type {dtype}, which this reader does not read")
    np_type = np.dtype(_DTYPES[dtype]).newbyteorder("<")
    count = int(np.prod(dims)) if dims else 1
    if any(d < 0 for d in dims):
        raise OnnxFormatError(f"tensor {name or '?'} has a negative dimension")
    if raw is not None:
        data = np.frombuffer(raw, dtype=np_type)
    else:
        parts = values.get(_VALUE_FIELDS[dtype], [])
        if dtype in (1, 11):  # packed floats / doubles (or one fixed-width value at a time)
            chunks = [np.frombuffer(v, dtype=np_type) if isinstance(v, memoryview)
                      else np.array([v], np.uint64 if dtype == 11 else np.uint32).view(np_type)
                      for _, v in parts]
        else:
            chunks = [np.array(_ints(w, v), np.int64) for w, v in parts]
        data = np.concatenate(chunks).astype(np_type) if chunks else np.empty(0, np_type)
    if data.size != count:
        raise OnnxFormatError(f"tensor {name or '?'} holds {data.size} values for shape {tuple(dims)}")
    return name, data.astype(_DTYPES[dtype], copy=True).reshape(dims)


def _attribute(buf: memoryview) -> tuple[str, object]:
    name = ""
    fields: dict[int, list] = {}
    for number, wire, value in _fields(buf):
        if number == 1:
            name = _text(value)
        else:
            fields.setdefault(number, []).append((wire, value))
    if 8 in fields:  # ints
        return name, [i for w, v in fields[8] for i in _ints(w, v)]
    if 3 in fields:  # i
        return name, _signed(fields[3][-1][1])
    if 2 in fields:  # f
        return name, float(np.array([fields[2][-1][1]], np.uint32).view(np.float32)[0])
    if 4 in fields:  # s
        return name, bytes(fields[4][-1][1])
    if 5 in fields:  # t
        return name, _tensor(fields[5][-1][1])[1]
    return name, None


def _node(buf: memoryview) -> Node:
    node = Node()
    for number, _wire, value in _fields(buf):
        if number == 1:
            node.inputs.append(_text(value))
        elif number == 2:
            node.outputs.append(_text(value))
        elif number == 3:
            node.name = _text(value)
        elif number == 4:
            node.op_type = _text(value)
        elif number == 5:
            key, val = _attribute(value)  # type: ignore[arg-type]
            node.attributes[key] = val
    return node


def read_graph(path: str | Path) -> Graph:
    """The nodes and stored tensors of the ONNX model in `path`.

    Raises:
        OnnxFormatError when the bytes are not an ONNX model (or keep data in external files).
        OSError when the file cannot be read.
    """
    data = memoryview(Path(path).read_bytes())
    try:
        return _read(data)
    except OnnxFormatError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError) as exc:  # bytes that fit no field
        raise OnnxFormatError(str(exc)) from None


def _read(data: memoryview) -> Graph:
    graph = None
    for number, wire, value in _fields(data):
        if number == 7 and wire == 2:
            graph = value
    if graph is None:
        raise OnnxFormatError("no graph in the file")
    nodes: list[Node] = []
    tensors: dict[str, np.ndarray] = {}
    for number, wire, value in _fields(graph):  # type: ignore[arg-type]
        if wire != 2:
            continue
        if number == 1:
            nodes.append(_node(value))  # type: ignore[arg-type]
        elif number == 5:
            name, array = _tensor(value)  # type: ignore[arg-type]
            tensors[name] = array
    if not nodes:
        raise OnnxFormatError("the graph has no nodes")
    return Graph(nodes, tensors)
