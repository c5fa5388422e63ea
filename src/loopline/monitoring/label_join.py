"""Which label each logged prediction row is compared with, and the labels that fit none.

The prediction log has one row per input row of a request (``_request_id``, ``_row``);
:func:`~.label_reads.read_labels` gives the newest label of each ``(request_id, row)`` and of
each request as a whole (``row`` missing). A prediction row takes:

* the label sent for its row;
* the label sent for its request as a whole, when the request had one row, or when that
  label was sent for every row (``all_rows``) - the newer of the two when both apply, the
  row's on a tie (it is the more precise).

A request id is one answer's. One logged twice - a client that retried with its own
``X-Request-ID``, a caller that reused an id - keeps its last logging only
(:func:`last_loggings`): the answer the client kept, compared once with its label and
counted once in ``rows`` and ``labelled``; the request's first row counts it in
``_relogged``. Refusing the id when it is logged is no option: the model server has
answered by then, several servers write the log, and the check would cost the log's
hot path a lookup per request.

A label for the request as a whole of a request of several rows is compared with none of
them (which prediction would it be the truth of?); it is counted in ``_no_row_label`` on
the request's first row, unless every row has a label of its own. A label for a row past
the request's last is counted in ``_out_of_range_labels`` there. A window's counts are the
sums of these columns over its rows.

Example:
    >>> f = pd.DataFrame({"_request_id": ["b", "b", "s"], "_row": [0, 1, 0]})
    >>> labels = pd.DataFrame({"request_id": ["b", "s", "b"], "row": [pd.NA, pd.NA, 7],
    ...     "label": ["1", "0", "1"], "label_num": [1.0, 0.0, 1.0],
    ...     "arrived": [1.0, 1.0, 1.0], "all_rows": [False, False, False]})
    >>> out = join_labels(f, labels)
    >>> out["label"].notna().tolist(), out["label"].iloc[2]
    ([False, False, True], '0')
    >>> out["_no_row_label"].tolist(), out["_out_of_range_labels"].tolist()
    ([1, 0, 0], [1, 0, 0])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Columns :func:`join_labels` adds besides ``label`` and ``label_num``.
ISSUE_COLUMNS = ("_no_row_label", "_out_of_range_labels")


def last_loggings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (the prediction log, oldest first) with each request id's last logging
    only - the rows logged at its newest ``_ts``, each ``_row`` once - and ``_relogged``:
    1 on the first kept row of a request that was logged more than once, else 0.

    Example:
        >>> f = pd.DataFrame({"_request_id": ["r", "s", "r"], "_row": [0, 0, 0],
        ...     "_ts": [1.0, 2.0, 3.0], "_prediction": [1, 0, 0]})
        >>> out = last_loggings(f)
        >>> out["_prediction"].tolist(), out["_relogged"].tolist()
        ([0, 0], [0, 1])
    """
    n = len(frame)
    if n == 0 or not frame.duplicated(["_request_id", "_row"]).any():
        return frame.assign(_relogged=np.zeros(n, dtype=np.int64))
    newest = frame.groupby("_request_id", sort=False)["_ts"].transform("max")
    kept = frame[frame["_ts"] == newest]
    kept = kept[~kept.duplicated(["_request_id", "_row"], keep="last")]
    dropped = frame.loc[frame.index.difference(kept.index), "_request_id"].unique()
    first = ~kept["_request_id"].duplicated()
    relogged = (first & kept["_request_id"].isin(dropped)).astype(np.int64)
    return kept.assign(_relogged=relogged.to_numpy())


def join_labels(frame: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (the prediction log) with ``label``, ``label_num`` and the counts of
    :data:`ISSUE_COLUMNS` (see the module); ``labels`` as :func:`~.label_reads.read_labels`
    gives them. The frame's own columns are not copied.

    Example:
        >>> f = pd.DataFrame({"_request_id": ["a"], "_row": [0]})
        >>> join_labels(f, pd.DataFrame(columns=["request_id", "row"]))["label"].tolist()
        [None]
    """
    n = len(frame)
    out = frame.assign(
        label=np.full(n, None, dtype=object),
        label_num=np.full(n, np.nan),
        _no_row_label=np.zeros(n, dtype=np.int64),
        _out_of_range_labels=np.zeros(n, dtype=np.int64),
    )
    if labels.empty or n == 0:
        return out
    rids = frame["_request_id"].astype(str).to_numpy(dtype=object)
    rows = frame["_row"].to_numpy(dtype=np.int64)
    # Each request id as a number (its first position among the distinct ids), so that
    # what is per request is an array indexed by it, not a pandas index of text.
    codes, distinct = pd.factorize(rids)
    ids = pd.Index(distinct)
    # The rows a request had: its highest row + 1 (a window of the ``last`` rows may cut
    # the oldest request, but keeps its highest rows: they are logged after the lower).
    top = np.full(len(distinct), -1, dtype=np.int64)
    np.maximum.at(top, codes, rows)
    n_rows = top[codes] + 1

    has_row = labels["row"].notna().to_numpy(dtype=bool)
    by_row = labels[has_row]
    whole = labels[~has_row]

    # A row's label: by (request, row) as one number, among the labels of logged rows.
    label_code = ids.get_indexer(by_row["request_id"].astype(str).to_numpy(dtype=object))
    label_row = by_row["row"].to_numpy(dtype=np.int64)
    logged = label_code >= 0
    fits = logged & (label_row >= 0)
    fits[fits] = label_row[fits] <= top[label_code[fits]]
    width = int(top.max()) + 1
    at_fit = pd.Index(label_code[fits] * width + label_row[fits]).get_indexer(codes * width + rows)
    at_r = np.full(n, -1, dtype=np.int64)
    at_r[at_fit >= 0] = np.flatnonzero(fits)[at_fit[at_fit >= 0]]
    # A request's label as a whole: by the request's number.
    whole_code = ids.get_indexer(whole["request_id"].astype(str).to_numpy(dtype=object))
    of_code = np.full(len(distinct), -1, dtype=np.int64)
    of_code[whole_code[whole_code >= 0]] = np.flatnonzero(whole_code >= 0)
    at_q = of_code[codes]
    got_r, got_q = at_r >= 0, at_q >= 0
    every = _pick(whole["all_rows"].to_numpy(dtype=bool), at_q, False)
    applies = got_q & (every | (n_rows == 1))
    arrived_r = _pick(by_row["arrived"].to_numpy(dtype=float), at_r, -np.inf)
    arrived_q = _pick(whole["arrived"].to_numpy(dtype=float), at_q, -np.inf)
    use_q = applies & (~got_r | (arrived_q > arrived_r))
    use_r = got_r & ~use_q
    for column in ("label", "label_num"):
        values = out[column].to_numpy(copy=True)
        values[use_r] = by_row[column].to_numpy()[at_r[use_r]]
        values[use_q] = whole[column].to_numpy()[at_q[use_q]]
        out[column] = values

    first = np.zeros(n, dtype=bool)
    first[np.unique(codes, return_index=True)[1]] = True
    # A label for the whole of a request of several rows, that some row is left without.
    unmet = np.bincount(codes, weights=got_q & ~applies & ~got_r, minlength=len(distinct)) > 0
    out["_no_row_label"] = (first & unmet[codes]).astype(np.int64)
    past = logged.copy()  # a row past the request's last; not logged: no request to count
    past[logged] = label_row[logged] > top[label_code[logged]]
    beyond = np.bincount(label_code[past], minlength=len(distinct)).astype(np.int64)
    out["_out_of_range_labels"] = np.where(first, beyond[codes], 0)
    return out


def _pick(values: np.ndarray, at: np.ndarray, missing: object) -> np.ndarray:
    """``values[at]``, with ``missing`` where ``at`` is -1 (no such label)."""
    out = np.full(len(at), missing, dtype=values.dtype)
    found = at >= 0
    out[found] = values[at[found]]
    return out
