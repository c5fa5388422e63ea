"""The tables the ``ls`` commands print: they fit the terminal without breaking a word.

Rich shares a narrow terminal's width among a table's columns by folding the widest ones
anywhere, so at 80 columns ``loopline runs ls`` printed ``FINI``/``SHED`` for FINISHED and
split dates and headers alike. :func:`list_table` names the columns that hold single words
(ids, statuses, versions, dates, sizes): when the table is too wide, those columns keep
their longest word whole (a date and its time may go on two lines) and only the free-text
columns (names, descriptions, metrics) fold. When the boxed table leaves the free-text
columns too little room, it is drawn without the box (a rule under the header and two
spaces between columns), which gives them 10 more characters. The free-text columns share
what is left widest first, so a short name stays on one line while long text folds, and
none is cut below its header's longest word (Rich, sharing the room itself, shrank them
all alike and split ``experiment``). A terminal too narrow even for that folds headers
too; one too narrow for the word columns alone gets Rich's own even squeeze.

A run id is 32 characters, which at 80 columns left the names and metrics of ``runs ls`` 4
characters each. The columns named in ``run_ids`` show each id whole when the whole table
fits, and else, as git and docker do, its first :data:`SHORT_ID` characters, with the
header saying so (``id (first 8)``): every command that takes a run id takes that prefix.

Example:
    >>> from rich.console import Console
    >>> table = list_table("runs", ("id", "status", "name"), words=("id", "status"))
    >>> table.add_row("3f2a9c0d1e2f4a5b6c7d8e9f00112233", "FINISHED", "a long name here")
    >>> console = Console(width=52)
    >>> with console.capture() as out:
    ...     console.print(table)
    >>> print("\\n".join(line.rstrip() for line in out.get().splitlines()[3:]))
    3f2a9c0d1e2f4a5b6c7d8e9f00112233  FINISHED  a long
                                                name
                                                here
    >>> table = list_table("runs", ("id", "status", "name"), words=("status",), run_ids=("id",))
    >>> table.add_row("3f2a9c0d1e2f4a5b6c7d8e9f00112233", "FINISHED", "a long name here")
    >>> with console.capture() as out:
    ...     console.print(table)
    >>> print("\\n".join(line.rstrip() for line in out.get().splitlines()[1:5]))
    ┏━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┓
    ┃ id (first 8) ┃ status   ┃ name             ┃
    ┡━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━┩
    │ 3f2a9c0d     │ FINISHED │ a long name here │
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import NamedTuple

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Column, Table
from rich.text import Text

from loopline.tracking.entities import MIN_RUN_ID_PREFIX, RUN_ID_LENGTH, is_run_id_prefix

#: The least a free-text column is given before the table drops its box for more room.
TEXT_MIN = 10
#: What a free-text column keeps before a word column may take room to stay on one line.
TEXT_ROOM = 12
#: How many characters of a run id a table too narrow for whole ids shows: the fewest that
#: the commands taking a run id accept.
SHORT_ID = MIN_RUN_ID_PREFIX


def list_table(
    title: str | None,
    columns: Sequence[str],
    *,
    words: Collection[str],
    run_ids: Collection[str] = (),
) -> Table:
    """A table with ``columns``, of which ``words`` hold single words that are never split
    and ``run_ids`` hold run ids, shown whole when the table fits and else shortened to
    their first :data:`SHORT_ID` characters (the header says so).

    The other columns fold (``overflow="fold"``: a long name folds rather than being cut to
    ``…``). Add rows with ``add_row`` as to any Rich table; a run id column's cells are the
    full ids (or empty).

    Example:
        >>> t = list_table("datasets", ("name", "kind"), words=("kind",))
        >>> [c.header for c in t.columns]
        ['name', 'kind']
    """
    unknown = (set(words) | set(run_ids)) - set(columns)
    if unknown:
        raise ValueError(f"columns {sorted(unknown)} are not among {list(columns)}")
    table = _FittedTable(title=title)
    whole = set(words) | set(run_ids)
    for header in columns:
        table.add_column(header, overflow="fold", no_wrap=header in whole)
    table.word_columns = frozenset(i for i, header in enumerate(columns) if header in whole)
    table.run_id_columns = frozenset(i for i, header in enumerate(columns) if header in run_ids)
    return table


class _FittedTable(Table):
    """A :class:`~rich.table.Table` that works out, at each render, the widths that keep its
    word columns whole at the console's width (see the module docstring)."""

    word_columns: frozenset[int] = frozenset()
    run_id_columns: frozenset[int] = frozenset()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from Table.__rich_console__(
            self._fitted(console, options.max_width), console, options
        )

    def _fitted(self, console: Console, width: int) -> Table:
        sizes = [_sizes(console, column) for column in self.columns]
        if any(size is None for size in sizes):
            return self  # a cell that is not text: left to Rich
        known = [size for size in sizes if size is not None]
        if sum(size.natural for size in known) <= _room(self, width):
            return self
        if self.run_id_columns:
            return self._short_ids()._fitted(console, width)
        boxed = self._with_widths(known, width, text_floor=_text_floor)
        if boxed is not None:
            return boxed
        bare = copy.copy(self)
        bare.box, bare.show_edge, bare.pad_edge, bare.collapse_padding = (
            box.SIMPLE_HEAD,
            False,
            False,
            True,
        )
        # Headers whole if the room allows; else free text may fold down to a character.
        for floor in (_header_floor, lambda size: 1):
            fitted = bare._with_widths(known, width, text_floor=floor)
            if fitted is not None:
                return fitted
        # Too narrow even for the words: fold everything (an id folded onto two lines can
        # still be copied; one cut short by a no_wrap column is another id).
        bare.columns = [replace(column, no_wrap=False) for column in self.columns]
        return bare

    def _short_ids(self) -> _FittedTable:
        """A copy whose run id columns show each id's first :data:`SHORT_ID` characters."""
        short = copy.copy(self)
        short.run_id_columns = frozenset()
        short.columns = [
            replace(
                column,
                header=f"{column.header} (first {SHORT_ID})",
                _cells=[_short_id(cell) for cell in column.cells],
            )
            if i in self.run_id_columns
            else column
            for i, column in enumerate(self.columns)
        ]
        return short

    def _with_widths(
        self, sizes: list[_Size], width: int, *, text_floor: Callable[[_Size], int]
    ) -> Table | None:
        """A copy whose word columns have fixed widths, or None when they leave a free-text
        column less than ``text_floor`` of it.

        A word column is as wide as its longest word, or as its longest line when the free
        text keeps :data:`TEXT_ROOM` all the same (a date keeps its time on its line); the
        free-text columns share the rest, folded by Rich.
        """
        words = self.word_columns
        room = _room(self, width)
        text = [size for i, size in enumerate(sizes) if i not in words]
        fixed = [size.longest if i in words else 0 for i, size in enumerate(sizes)]
        if sum(fixed) + sum(map(text_floor, text)) > room:
            return None
        spare = room - sum(fixed) - sum(min(size.natural, TEXT_ROOM) for size in text)
        for i in sorted(words):
            grow = sizes[i].natural - fixed[i]
            if 0 < grow <= spare:  # all or nothing: a part would only add blank space
                fixed[i] += grow
                spare -= grow
        shares = _text_widths(
            [(i, size) for i, size in enumerate(sizes) if i not in words],
            room - sum(fixed),
            text_floor,
        )
        fitted = copy.copy(self)
        fitted.columns = [
            replace(column, width=fixed[i], no_wrap=False)
            if i in words
            else replace(column, width=shares[i])
            for i, column in enumerate(self.columns)
        ]
        return fitted


def _text_widths(
    text: list[tuple[int, _Size]], room: int, text_floor: Callable[[_Size], int]
) -> dict[int, int]:
    """The widths of the free-text columns (by index) sharing ``room``: each its natural
    width, the widest cut a character at a time until they fit, none below its floor. So
    short names stay whole and long text folds, as Rich shares the room; but Rich, left to
    itself, also cuts below the floor and splits a header such as ``experiment``.

    Example:
        >>> floor = lambda size: size.header
        >>> _text_widths([(0, _Size(40, 8, 4)), (1, _Size(12, 12, 10))], 30, floor)
        {0: 18, 1: 12}
    """
    widths = {i: size.natural for i, size in text}
    floors = {i: text_floor(size) for i, size in text}
    excess = sum(widths.values()) - room
    while excess > 0:
        cut = [i for i in widths if widths[i] > floors[i]]
        if not cut:
            break
        widest = max(cut, key=lambda j: (widths[j], -j))
        widths[widest] -= 1
        excess -= 1
    return widths


def _short_id(cell: RenderableType) -> RenderableType:
    """A run id's first :data:`SHORT_ID` characters; any other cell as it is."""
    if isinstance(cell, str) and len(cell) == RUN_ID_LENGTH and is_run_id_prefix(cell):
        return cell[:SHORT_ID]
    return cell


class _Size(NamedTuple):
    """A column's longest line, longest word, and longest word of its header."""

    natural: int
    longest: int
    header: int


def _header_floor(size: _Size) -> int:
    """The least a free-text column gets in the table without a box: its header's words
    whole, as far as its text is that long."""
    return min(size.natural, size.header)


def _text_floor(size: _Size) -> int:
    """The least a free-text column gets in the boxed table: its header's words whole, and
    :data:`TEXT_MIN`, as far as its text is that long."""
    return min(size.natural, max(TEXT_MIN, size.header))


def _room(table: Table, width: int) -> int:
    """The width ``table``'s cells share at ``width``: less its borders and padding, as Rich
    counts them."""
    padding = sum(table._get_padding_width(i) for i in range(len(table.columns)))
    return width - table._extra_width - padding


def _sizes(console: Console, column: Column) -> _Size | None:
    """A column's sizes over its header and cells, or None when a cell is not text."""
    header = _plain(console, column.header)
    if header is None:
        return None
    natural = longest = 0
    for cell in (header, *column.cells):
        text = _plain(console, cell)
        if text is None:
            return None
        for line in text.splitlines() or [""]:
            natural = max(natural, cell_len(line))
            longest = max([longest, *(cell_len(word) for word in line.split())])
    return _Size(natural, longest, max([0, *(cell_len(word) for word in header.split())]))


def _plain(console: Console, cell: RenderableType) -> str | None:
    if isinstance(cell, str):
        return console.render_str(cell).plain
    if isinstance(cell, Text):
        return cell.plain
    return None
