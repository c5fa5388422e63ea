"""Scoring a CSV file: every column read as text, the model's features parsed by its signature.

A CSV file has no types; a reader that guesses them from the values changes what it
copies. An id column of ``007``, ``0012``, ``1e3`` and ``NA`` became the numbers 7, 12,
1000 and a null, and one stray word in a feature column made the whole column text, so
the error named the first number of the chunk instead of the word. So ``loopline score``
reads a CSV file with every column as text (:func:`csv_format`): the columns the model
does not take are copied as they are, and :func:`parse_features` parses each feature as
the type its signature gives it:

* ``float`` and ``int`` - numbers as Arrow's CSV reader parses them (surrounding spaces
  trimmed, ``1e3``, ``inf``); an ``int`` column of whole numbers written as floats
  (``3.0``, what pandas writes for an int column with a gap) is read as floats and
  checked by the signature, as a JSON client's ``3.0`` is;
* ``bool`` - Arrow's CSV spellings (``true``, ``False``, ``1``, ``0``, ...);
* the CSV reader's null spellings (``NA``, ``null``, an empty field, ...) are nulls in
  those columns, which the signature then allows or refuses;
* ``string`` - the text as it is (``NA`` is the text ``NA``, as the reader keeps it);
* ``category`` - the text, or for categories that are not all text, each value as the
  number or the bool it spells.

A value that does not parse is left as its text, for the signature's check to name with
its row and value (``column 'spend' expects float, got str 'abc' (row 7)``).

Example:
    >>> import pyarrow as pa
    >>> from loopline.training.signature import infer_signature
    >>> sig = infer_signature([{"spend": 1.5}])
    >>> table = pa.table({"id": ["007", "NA"], "spend": ["40.5", " 41"]})
    >>> out, frame = parse_features(table, sig)
    >>> out.column("id").to_pylist(), out.column("spend").to_pylist()
    (['007', 'NA'], [40.5, 41.0])
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from loopline.training.signature import ModelSignature
    from loopline.training.signature_columns import ColumnSpec


def csv_format(path: Path) -> Any:
    """A pyarrow dataset format that reads every column of the CSV file ``path`` as text
    (its header gives the names; an empty field is the empty text, never a null).

    Example:
        >>> # ds.dataset("in.csv", format=csv_format(Path("in.csv")))
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.dataset as ds

    names = ds.dataset(str(path), format="csv").schema.names
    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=False
    )
    return ds.CsvFileFormat(convert_options=convert)


def parse_features(table: pa.Table, signature: ModelSignature) -> tuple[pa.Table, pd.DataFrame]:
    """``table`` (every column text) with each feature parsed as its signature type, and the
    features as the frame the model is given (see the module). A value that does not parse
    stays text in the frame, so the signature's check names it; the table is then not used.

    Example:
        >>> import pyarrow as pa
        >>> from loopline.training.signature import infer_signature
        >>> sig = infer_signature([{"n": 1}])
        >>> _, frame = parse_features(pa.table({"n": ["1", "2.0", "x"]}), sig)
        >>> frame["n"].tolist()
        [1.0, 2.0, 'x']
    """
    import pandas as pd

    present = [c for c in signature.inputs if c.name in table.schema.names]
    failed: dict[str, list[Any]] = {}
    for spec in present:
        at = table.schema.get_field_index(spec.name)
        parsed = _parse(spec, table.column(at))
        if isinstance(parsed, list):
            failed[spec.name] = parsed
        else:
            table = table.set_column(at, spec.name, parsed)
    if len(present) < len(signature.inputs):  # the signature's check names what is missing
        frame = table.to_pandas()
    else:
        frame = table.select(signature.names).to_pandas()
    for name, values in failed.items():
        frame[name] = pd.Series(values, index=frame.index, dtype=object)
    return table, frame


def _parse(spec: ColumnSpec, text: Any) -> Any:
    """One column's text as its type: an Arrow array, or a list of values with the first
    value that does not parse (and every value after it) left as text."""
    import pyarrow as pa

    kind = spec.type
    if kind == "string" or (
        kind == "category" and all(isinstance(v, str) for v in spec.categories or ())
    ):
        return text
    if kind == "category":
        return [_scalar(v) for v in text.to_pylist()]
    trimmed, nulls = _trimmed(text)
    if kind == "bool":
        return _bools(trimmed, nulls, text)
    if kind == "int":
        try:
            return _cast(trimmed, pa.int64())
        except pa.ArrowInvalid:
            pass  # perhaps whole numbers written as floats: 3.0
    try:
        floats = _cast(trimmed, pa.float64())
    except pa.ArrowInvalid:
        return _up_to_first_failure(trimmed, pa.float64(), text)
    return _whole(floats) if kind == "int" else floats


def _whole(floats: Any) -> Any:
    """An ``int`` column read as floats: int64 when every value is a whole number below
    2**53 (where a float still stands for one integer), else the floats, for the
    signature's check to name the one that is not."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from loopline.training.signature_checks import INT_EXACT_FLOAT

    largest = pc.max(pc.abs(floats)).as_py()
    if largest is not None and not largest < INT_EXACT_FLOAT:
        return floats
    try:
        return pc.cast(floats, pa.int64())  # a safe cast: refuses a fraction
    except pa.ArrowInvalid:
        return floats


def _trimmed(text: Any) -> tuple[Any, Any]:
    """The column's text trimmed (as the CSV reader trims numbers) with its null spellings
    made nulls, and the mask of those nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    trimmed = pc.utf8_trim_whitespace(text)
    spellings = pa.array(pcsv.ConvertOptions().null_values, pa.string())
    nulls = pc.is_in(trimmed, value_set=spellings)
    return pc.if_else(nulls, pa.scalar(None, pa.string()), trimmed), nulls


def _cast(values: Any, kind: Any) -> Any:
    import pyarrow.compute as pc

    return pc.cast(values, kind)


def _bools(trimmed: Any, nulls: Any, text: Any) -> Any:
    """A bool column from the CSV reader's spellings of true and false (a list, see
    :func:`_parse`, when a value spells neither)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    options = pcsv.ConvertOptions()
    true = pc.is_in(trimmed, value_set=pa.array(options.true_values, pa.string()))
    false = pc.is_in(trimmed, value_set=pa.array(options.false_values, pa.string()))
    known = pc.or_(pc.or_(true, false), nulls).to_numpy(zero_copy_only=False)
    if known.all():
        return pc.if_else(nulls, pa.scalar(None, pa.bool_()), true)
    first = int((~known).argmax())
    values: list[Any] = pc.if_else(nulls, pa.scalar(None, pa.bool_()), true).to_pylist()
    rest = zip(values[first:], text.to_pylist()[first:], strict=True)
    return values[:first] + [None if v is None else raw for v, raw in rest]


def _up_to_first_failure(trimmed: Any, kind: Any, text: Any) -> list[Any]:
    """The parsed values before the first one that does not parse (found by halving: each
    half is cast whole), then the text of that one and of every later non-null value."""
    import pyarrow as pa

    lo, hi = 0, len(trimmed)  # the values before lo parse; the first failure is before hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            _cast(trimmed.slice(lo, mid - lo), kind)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    good: list[Any] = _cast(trimmed.slice(0, lo), kind).to_pylist()
    rest = trimmed.slice(lo).to_pylist()
    raw = text.slice(lo).to_pylist()
    return good + [None if v is None else r for v, r in zip(rest, raw, strict=True)]


def _scalar(text: str) -> Any:
    """A category value as the JSON scalar it spells: a number, true/false, or the text."""
    import pyarrow.csv as pcsv

    word = text.strip()
    options = pcsv.ConvertOptions()
    if word in options.null_values:
        return None
    if word in ("true", "True", "TRUE"):
        return True
    if word in ("false", "False", "FALSE"):
        return False
    for parse in (int, float):
        try:
            return parse(word)
        except ValueError:
            continue
    return text
