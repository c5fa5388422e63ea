"""The prediction log's queue entries and spool records: a logged request as the writer
queues it and as the local spool holds it until it is written.

An entry (``_Entry``) is what :class:`~loopline.monitoring.prediction_log.PredictionLogger`
queues for its writer thread. Each answered request is also one spool record
(:mod:`.spool`), written before the answer leaves: a model server's as its request body and
answer behind a small binary header (:func:`_served_record`, no JSON work on the request
path), an SDK call's as JSON (:func:`_call_record`, which refuses values JSON would
change). Reading them back - a served record parsed as the server parsed its body, a
record replayed after a kill - is here too. Apart from the writer: this is the format both
the request path and the recovery of a dead process's spool depend on.

Example:
    >>> _call_record([0.0, "r-1", "m", "1", [{"x": 1.0}], [0], 0.5])
    b'E[0.0,"r-1","m","1",[{"x":1.0}],[0],0.5]'
"""

from __future__ import annotations

import functools
import json
import math
import struct
from typing import Any

import orjson

from loopline.monitoring.log_columns import RawInputs
from loopline.monitoring.spool import Segment
from loopline.serving.inputs import parse_accepted

#: ``(ts, request id, model, version, inputs, outputs, latency ms, segment, end)``: the
#: last two say where the request's spool record ends (None, 0: it has none). A model
#: server's request has its spool record (bytes) as ``inputs`` and :data:`SERVED` as
#: ``outputs``: held until the next batch, bytes are never walked by the collector, where
#: the parsed rows and predictions (~7 objects a request) made its collections cost
#: ~14 us a request (a young one every ~300 requests took ~1 ms, an older one ~40 ms).
_Entry = tuple[float, str, str, str, Any, Any, float, Segment | None, int]
#: The ``outputs`` of a model server's entry: its ``inputs`` are its spool record.
SERVED = object()
#: A server's spool record: b"R", ts, latency, then the lengths of its meta (model,
#: version, the signature's names and types as JSON) and of the request body; the answer
#: as sent takes the rest.
_SERVED = struct.Struct("<cddII")
#: An SDK call's spool record: b"E" then the call as JSON (NaN and Infinity allowed).
_CALLED = b"E"


def _nonfinite(value: Any) -> bool:
    """Whether ``value`` - plain JSON data: dicts with text keys, lists, text, int, float,
    bool, None, of exactly these types - holds a NaN or an infinity; TypeError for
    anything else (a tuple, a numpy number, a datetime), which JSON would change."""
    t = type(value)
    if t is float:
        return not math.isfinite(value)
    if t is str or t is int or t is bool or value is None:
        return False
    if t is list:
        return any([_nonfinite(v) for v in value])  # a list, not a generator: check all
    if t is dict:
        for k in value:
            if type(k) is not str:
                raise TypeError(f"a key of type {type(k).__name__}: {k!r:.40}")
        return any([_nonfinite(v) for v in value.values()])
    raise TypeError(f"a value of type {t.__name__}: {value!r:.40}")


#: orjson refuses these rather than turning them into text (a datetime, a dataclass, a
#: subclass of str, int, dict or list: an IntEnum); numpy numbers it refuses by default.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_STRICT |= orjson.OPT_PASSTHROUGH_SUBCLASS


def _call_record(call: list[Any]) -> bytes:
    """The spool record of a :meth:`~.prediction_log.PredictionLogger.log` call; TypeError
    when its values are not plain JSON data (replayed, they would come back as something
    else).

    The usual call is encoded by orjson and read back equal: plain data (a tuple would
    come back a list, a NaN None, a UUID text). Only the others are walked.
    """
    try:
        data = orjson.dumps(call, option=_STRICT)
        if orjson.loads(data) == call:
            return _CALLED + data
    except TypeError:
        pass
    _nonfinite(call)  # TypeError for what is no plain data
    # NaN, infinity, an int past 64 bits, a lone surrogate: the standard module holds them
    return _CALLED + json.dumps(call, separators=(",", ":")).encode()


def _served_record(ts: float, latency_ms: float, meta: bytes, body: bytes, answer: bytes) -> bytes:
    """A model server's spool record: the header, ``meta`` (model, version, the
    signature's names and types as JSON), the request ``body`` and the ``answer`` as sent."""
    return b"".join((_SERVED.pack(b"R", ts, latency_ms, len(meta), len(body)), meta, body, answer))


@functools.lru_cache(maxsize=256)
def _served_meta(meta: bytes) -> tuple[str, str, list[str] | None, list[str] | None]:
    """A record's model, version, names and types (the same few per server: decoded once)."""
    model, version, names, types = orjson.loads(meta)
    return model, version, names, types


def _served(record: bytes) -> tuple[float, float, str, str, str, RawInputs, Any]:
    """The time, latency, model, version, request id, inputs and predictions of a model
    server's spool record, its body parsed as the server parsed it when it answered
    (raises on a record of another kind)."""
    kind, ts, latency, meta_len, body_len = _SERVED.unpack_from(record)
    if kind != b"R":
        raise ValueError(f"a spool record of unknown kind {kind!r}")
    at = _SERVED.size
    model, version, names, types = _served_meta(record[at : at + meta_len])
    body = record[at + meta_len : at + meta_len + body_len]
    answer = orjson.loads(record[at + meta_len + body_len :])
    shape, rows = parse_accepted(body)
    inputs = RawInputs(shape, rows, names, types)
    return ts, latency, model, version, answer["request_id"], inputs, answer["predictions"]


def _replayed(payload: bytes, seg: Segment, end: int) -> _Entry:
    """The queue entry of a spool record (raises on one that is not a record): a model
    server's is queued as its record, as the server queued it (parsed here once to check
    it, then again when its batch is made)."""
    if payload[:1] == _CALLED:
        ts, rid, model, version, inputs, outputs, latency = json.loads(payload[1:])
        return (ts, rid, model, version, inputs, outputs, latency, seg, end)
    ts, latency, model, version, rid, _, _ = _served(payload)
    return (ts, rid, model, version, payload, SERVED, latency, seg, end)
