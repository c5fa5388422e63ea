"""The request-id index of the prediction log: which files can hold a given request id.

Labels arrive as request ids; finding their predictions by reading the ``_request_id``
column of every prediction file grows with all the traffic ever logged. Instead, when the
writer flushes a file it stores, in the file's own ``prediction_batches`` row (the same
single insert, never a row per request):

* ``rid_min`` / ``rid_max`` - the smallest and largest request id in the file. Ids the
  model server makes share a per-process prefix, so the range alone rules out the files
  of other processes (compared in Python, by code point: a database collation could
  order them differently);
* ``rid_hashes`` - the file's **fingerprints**: the low 32 bits of a keyed 64-bit hash of
  each distinct id, sorted (4 bytes per request).

Why fingerprints and not a Bloom filter: labels come in batches of thousands. A filter
with a 1 % false-positive rate per id says "maybe" for almost every file when 10,000 ids
are tested against it. A sorted fingerprint list errs for one id with probability
``n / 2**32`` (``n`` ids in the file): for 10,000 wanted ids against a file of 10,000,
about 2 % of files are opened in vain; a file that holds a wanted id is never missed.

:func:`may_hold` reads the small range columns of every file, keeps the files whose range
holds a wanted id, loads only their fingerprints and keeps the files where one matches (a
binary search of the wanted fingerprints): :func:`~.labelled_requests.candidate_files`
for prediction files, whose ``_request_id`` column is then matched exactly, and
:func:`~.label_reads.label_files` for label files (``label_batches`` has the same columns).
Files written before the index existed (NULL columns) are always candidates.

Hashing: pandas' SipHash-2-4 (``pandas.util.hash_array``) with a fixed key; the header
names the scheme (``LLF1``) and a test pins hash values, so that a change in pandas is
caught before it could lose a label.

Example:
    >>> index = build_fingerprints(["a-1", "a-2", "a-3"])
    >>> WantedIds(["a-2", "zz"]).may_be_in(FileIndex("d", "a-1", "a-3", index))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

_MAGIC = b"LLF1"
_KEY = "loopline.rid.v1!"  # 16 characters: SipHash's key
#: Width of the ``rid_min`` / ``rid_max`` columns; a longer id leaves the range unset.
RID_RANGE_CHARS = 200


def hash_ids(ids: Sequence[str] | npt.NDArray[np.object_]) -> npt.NDArray[np.uint64]:
    """The 64-bit hash of each id (SipHash-2-4 with Loopline's fixed key).

    Example:
        >>> int(hash_ids(["abc"])[0])
        5171166672679695367
    """
    arr = ids if isinstance(ids, np.ndarray) else np.asarray(list(ids), dtype=object)
    out: npt.NDArray[np.uint64] = pd.util.hash_array(arr, hash_key=_KEY, categorize=False)
    return out


def fingerprints(ids: Sequence[str] | npt.NDArray[np.object_]) -> npt.NDArray[np.uint32]:
    """The 32-bit fingerprint of each id (the low half of :func:`hash_ids`).

    Example:
        >>> int(fingerprints(["abc"])[0]) == int(hash_ids(["abc"])[0]) & 0xFFFFFFFF
        True
    """
    return (hash_ids(ids) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def build_fingerprints(ids: Sequence[str] | npt.NDArray[np.object_]) -> bytes:
    """The index of a file's ids: ``LLF1`` and their distinct fingerprints, sorted.

    Example:
        >>> len(build_fingerprints(["r-1", "r-2", "r-1"]))
        12
    """
    return _encode(_distinct(np.sort(fingerprints(ids))))


def _distinct(ascending: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """The distinct fingerprints of ``ascending`` (sorted), as ``np.unique`` gives them:
    each kept where it differs from the one before. ``np.unique`` hashes them, ~0.8 ms of
    10,000, where a sort and this pass take ~0.15 ms (or nothing but the pass, sorted
    already) - at each flush of the prediction log and at each call of log_labels."""
    keep = np.empty(len(ascending), dtype=np.bool_)
    keep[:1] = True
    np.not_equal(ascending[1:], ascending[:-1], out=keep[1:])
    out: npt.NDArray[np.uint32] = ascending[keep]
    return out


def _encode(sorted_unique: npt.NDArray[np.uint32]) -> bytes:
    return _MAGIC + sorted_unique.astype("<u4").tobytes()


def _decode(index: bytes) -> npt.NDArray[np.uint32]:
    if index[:4] != _MAGIC:
        raise ValueError(f"not a Loopline request-id index (header {index[:4]!r})")
    return np.frombuffer(index, dtype="<u4", offset=4)


def contains(index: bytes, prints: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """For each fingerprint: whether the index holds it (False: surely not in the file).

    Example:
        >>> contains(build_fingerprints(["a"]), fingerprints(["a", "b"])).tolist()
        [True, False]
    """
    stored = _decode(index)
    if len(stored) == 0 or len(prints) == 0:
        return np.zeros(len(prints), dtype=np.bool_)
    at = np.minimum(np.searchsorted(stored, prints), len(stored) - 1)
    found: npt.NDArray[np.bool_] = np.asarray(stored[at] == prints, dtype=np.bool_)
    return found


@dataclass(frozen=True)
class FileIndex:
    """One prediction file's index: its digest, id range and fingerprints (None: unset)."""

    digest: str
    rid_min: str | None
    rid_max: str | None
    hashes: bytes | None


class WantedIds:
    """The request ids looked for, sorted once and fingerprinted once for every file.

    Example:
        >>> w = WantedIds(["b", "a", "c"])
        >>> w.in_range("a", "b"), w.in_range("x", "z")
        ((0, 2), None)
    """

    def __init__(self, ids: Iterable[str]) -> None:
        # dict.fromkeys, not set: it keeps the ids' order, and ids that come mostly in
        # order (a recent slice of traffic: a counter) are then sorted in one pass of
        # Python's merge sort (0.4 ms of 10,000 ids; 1.7 ms from a set's order)
        self.sorted: npt.NDArray[np.object_] = np.array(sorted(dict.fromkeys(ids)), dtype=object)
        self._arrow: pa.Array | None = None
        self.prints = fingerprints(self.sorted)
        # The fingerprints in their own order, and where each is in ``sorted`` (made when
        # first needed): a file's slice of them is then picked in order, which costs less
        # than a sort of the slice
        self._order: npt.NDArray[np.intp] | None = None
        self._by_print = self.prints

    def as_arrow(self) -> pa.Array:
        """The sorted ids as Arrow strings (made once).

        Example:
            >>> WantedIds(["b", "a", "b"]).as_arrow().to_pylist()
            ['a', 'b']
        """
        if self._arrow is None:
            self._arrow = pa.array(self.sorted, pa.string())
        return self._arrow

    def prints_sorted(self, lo: int, hi: int) -> npt.NDArray[np.uint32]:
        """The fingerprints of the sorted ids ``lo:hi``, in ascending order: looked up in
        a file's (sorted) fingerprints, they walk it in order, ~5x quicker than in the
        ids' order (a random probe each), and :func:`contains` answers alike for them.

        Example:
            >>> w = WantedIds(["a", "b", "c"])
            >>> sorted(w.prints_sorted(0, 2).tolist()) == sorted(w.prints[:2].tolist())
            True
        """
        if self._order is None:
            self._order = np.argsort(self.prints)
            self._by_print = self.prints[self._order]
        if lo == 0 and hi == len(self.prints):
            return self._by_print
        inside = (self._order >= lo) & (self._order < hi)
        picked: npt.NDArray[np.uint32] = self._by_print[inside]
        return picked

    def in_range(self, rid_min: str | None, rid_max: str | None) -> tuple[int, int] | None:
        """The slice of the sorted wanted ids inside a file's range (None: none is).

        Example:
            >>> WantedIds(["a", "m", "z"]).in_range("b", "n")
            (1, 2)
        """
        lo, hi = 0, len(self.sorted)
        if rid_min is not None and rid_max is not None:
            lo = int(np.searchsorted(self.sorted, rid_min, side="left"))
            hi = int(np.searchsorted(self.sorted, rid_max, side="right"))
        return (lo, hi) if lo < hi else None

    def in_ranges(
        self, ranges: Sequence[tuple[str | None, str | None]]
    ) -> list[tuple[int, int] | None]:
        """:meth:`in_range` of many files' ``(rid_min, rid_max)`` at once: two binary
        searches of all their bounds in NumPy instead of two calls a file.

        Example:
            >>> WantedIds(["a", "m", "z"]).in_ranges([("b", "n"), (None, None), ("x", "y")])
            [(1, 2), (0, 3), None]
        """
        n = len(self.sorted)
        los = np.zeros(len(ranges), dtype=np.intp)
        his = np.full(len(ranges), n, dtype=np.intp)
        bounded = [i for i, (lo, hi) in enumerate(ranges) if lo is not None and hi is not None]
        if bounded:
            mins = np.array([ranges[i][0] for i in bounded], dtype=object)
            maxs = np.array([ranges[i][1] for i in bounded], dtype=object)
            los[bounded] = np.searchsorted(self.sorted, mins, side="left")
            his[bounded] = np.searchsorted(self.sorted, maxs, side="right")
        pairs = zip(los.tolist(), his.tolist(), strict=True)
        return [(lo, hi) if lo < hi else None for lo, hi in pairs]

    def may_be_in(self, entry: FileIndex) -> bool:
        """Whether the file can hold any wanted id (True for a file without an index).

        Example:
            >>> WantedIds(["z"]).may_be_in(FileIndex("d", "a", "b", None))
            False
        """
        span = self.in_range(entry.rid_min, entry.rid_max)
        if span is None:
            return False
        if entry.hashes is None:
            return True
        return bool(contains(entry.hashes, self.prints_sorted(*span)).any())

    def index_columns(self) -> dict[str, object]:
        """:func:`index_columns` of these ids, from their sort and fingerprints (already
        made to look for them: a label file is indexed by the ids it was matched with).

        Example:
            >>> WantedIds(["r-2", "r-1", "r-2"]).index_columns() == index_columns(["r-2", "r-1"])
            True
        """
        if not len(self.sorted):
            return _columns(None, None, None)
        every = _distinct(self.prints_sorted(0, len(self.sorted)))
        return _columns(self.sorted[0], self.sorted[-1], every)


#: Files whose fingerprints :func:`may_hold` loads at a time (one query each).
HASH_CHUNK = 200
#: From this many files in range, :func:`may_hold` first reads the fingerprints of
#: ``SAMPLE_FILES`` of them, spread out: if each holds a wanted id, it keeps them all.
SAMPLE_FROM = 64
SAMPLE_FILES = 16


def may_hold(
    wanted: WantedIds,
    files: Sequence[tuple[int, str | None, str | None]],
    load_hashes: Callable[[list[int]], Mapping[int, bytes | None]],
) -> list[int]:
    """The row ids of the ``files`` (``(row id, rid_min, rid_max)``, in their order) that
    can hold a wanted id: by their range, then by their fingerprints, which ``load_hashes``
    reads for the files in range only, :data:`HASH_CHUNK` at a time. A file without an
    index (NULL columns) is always kept; one that holds a wanted id is never left out.
    With many files in range, a spread-out sample of them is read first: if each holds a
    wanted id (ids scattered over the whole log), every file in range is kept unread.

    Example:
        >>> stored = {1: build_fingerprints(["a-1"]), 2: build_fingerprints(["a-2"])}
        >>> files = [(1, "a-1", "a-1"), (2, "a-2", "a-2"), (3, None, None)]
        >>> may_hold(WantedIds(["a-2"]), files, lambda ids: {i: stored.get(i) for i in ids})
        [2, 3]
    """
    spans = wanted.in_ranges([(lo, hi) for _, lo, hi in files])
    in_range = [(f[0], span) for f, span in zip(files, spans, strict=True) if span is not None]
    if len(in_range) >= SAMPLE_FROM:
        # Ids scattered over the whole log are in every file: each file's fingerprints then
        # cost a read (~0.06 ms) and prune nothing. A sample spread over the files tells:
        # when each file of it holds a wanted id, every file in range is kept unread.
        step = len(in_range) // SAMPLE_FILES
        sample = in_range[::step][:SAMPLE_FILES]
        if len(_holding(wanted, sample, load_hashes)) == len(sample):
            return [row_id for row_id, _ in in_range]
    kept = []
    for start in range(0, len(in_range), HASH_CHUNK):
        kept += _holding(wanted, in_range[start : start + HASH_CHUNK], load_hashes)
    return kept


def _holding(
    wanted: WantedIds,
    files: Sequence[tuple[int, tuple[int, int]]],
    load_hashes: Callable[[list[int]], Mapping[int, bytes | None]],
) -> list[int]:
    """The row ids of ``files`` (row id, the slice of the wanted ids in its range) whose
    fingerprints hold one of the wanted ids, or that have none (not indexed)."""
    hashes = load_hashes([row_id for row_id, _ in files])
    kept = []
    for row_id, (lo, hi) in files:
        index = hashes.get(row_id)
        if index is None or contains(index, wanted.prints_sorted(lo, hi)).any():
            kept.append(row_id)
    return kept


def index_columns(ids: Sequence[str]) -> dict[str, object]:
    """The index columns of a prediction or label file's row for the request ids it holds.

    Example:
        >>> cols = index_columns(["r-2", "r-1"])
        >>> cols["rid_min"], cols["rid_max"]
        ('r-1', 'r-2')
    """
    if not ids:
        return _columns(None, None, None)
    return _columns(min(ids), max(ids), _distinct(np.sort(fingerprints(ids))))


def _columns(
    lo: str | None, hi: str | None, sorted_unique: npt.NDArray[np.uint32] | None
) -> dict[str, object]:
    """The index columns of ids whose smallest and largest are ``lo`` and ``hi`` and whose
    distinct fingerprints, sorted, are ``sorted_unique`` (None: no id)."""
    if max(len(lo or ""), len(hi or "")) > RID_RANGE_CHARS:  # wider than the column
        lo = hi = None  # the fingerprints alone then decide
    hashes = None if sorted_unique is None else _encode(sorted_unique)
    return {"rid_min": lo, "rid_max": hi, "rid_hashes": hashes}
