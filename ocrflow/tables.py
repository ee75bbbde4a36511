"""HTML tables as a model writes them, parsed into cells and a grid, and checked.

Table parsing answers with HTML (``<table><tr><td>...``, merged cells as ``rowspan``/``colspan``,
sometimes ``<thead>``/``<tbody>`` and inline tags such as ``<b>``). :func:`parse_tables` reads
every ``<table>`` in an answer with the standard library's HTML parser, which never raises on
bad markup; :func:`check_table` then says what is wrong with one, as a person would put it:
no rows, rows of different widths once merged cells are counted, a merged cell running past
the table, or two cells claiming one place. A table that passes has a rectangular
:attr:`Table.grid`, each merged cell's text in its top-left place and ``""`` in the places it covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

_CELL_TAGS = {"td", "th"}
_MAX_SPAN = 1000


@dataclass
class Cell:
    text: str = ""
    rowspan: int = 1
    colspan: int = 1
    header: bool = False


@dataclass
class Table:
    """One ``<table>``: its rows of cells as written, and the grid they make."""

    rows: list[list[Cell]] = field(default_factory=list)
    html: str = ""

    @property
    def grid(self) -> list[list[str]]:
        """The table as a rectangle of strings (see the module docstring); ragged when it fails its check."""
        placed: dict[tuple[int, int], str] = {}
        width = 0
        for r, row in enumerate(self.rows):
            c = 0
            for cell in row:
                while (r, c) in placed:
                    c += 1
                for dr in range(cell.rowspan):
                    for dc in range(cell.colspan):
                        placed.setdefault((r + dr, c + dc), cell.text if (dr, dc) == (0, 0) else "")
                c += cell.colspan
                width = max(width, c)
        height = len(self.rows)
        return [[placed.get((r, c), "") for c in range(width)] for r in range(height)]


def check_table(table: Table) -> str | None:
    """What is wrong with ``table``, or ``None`` when its rows and columns add up."""
    if not table.rows or not any(table.rows):
        return "the table has no cells"
    occupied: dict[tuple[int, int], int] = {}
    widths: list[int] = [0] * len(table.rows)
    for r, row in enumerate(table.rows):
        c = 0
        for cell in row:
            while (r, c) in occupied:
                c += 1
            if r + cell.rowspan > len(table.rows):
                return f"a cell in row {r + 1} spans {cell.rowspan} rows, past the table's last row"
            for dr in range(cell.rowspan):
                for dc in range(cell.colspan):
                    if (r + dr, c + dc) in occupied:
                        return f"row {r + dr + 1} has two cells in column {c + dc + 1}"
                    occupied[(r + dr, c + dc)] = r
                    widths[r + dr] = max(widths[r + dr], c + dc + 1)
            c += cell.colspan
    if len(set(widths)) > 1:
        counts = ", ".join(f"row {r + 1}: {w}" for r, w in enumerate(widths) if w != max(widths))
        return f"rows have different numbers of columns ({max(widths)} in most; {counts})"
    return None


def parse_tables(html: str) -> list[Table]:
    """Every ``<table>`` in ``html``, nested ones as tables of their own; never raises."""
    parser = _TableParser(html)
    parser.feed(html)
    parser.close()
    return parser.tables


def _span(value: str | None) -> int:
    try:
        return min(max(int(str(value).strip()), 1), _MAX_SPAN)
    except ValueError:
        return 1


class _TableParser(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._lines = source.splitlines(keepends=True)
        self._source = source
        self.tables: list[Table] = []
        self._open: list[tuple[Table, int]] = []
        """Tables being read, innermost last, with where their markup starts."""
        self._cell: list[Cell | None] = []
        self._text: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._open.append((Table(), self._offset()))
            self._cell.append(None)
            self._text.append([])
        elif not self._open:
            return
        elif tag == "tr":
            self._close_cell()
            self._open[-1][0].rows.append([])
        elif tag in _CELL_TAGS:
            self._close_cell()
            table = self._open[-1][0]
            if not table.rows:
                table.rows.append([])
            values = dict(attrs)
            cell = Cell(
                rowspan=_span(values.get("rowspan")), colspan=_span(values.get("colspan")), header=tag == "th"
            )
            table.rows[-1].append(cell)
            self._cell[-1] = cell
            self._text[-1] = []
        elif tag == "br" and self._cell and self._cell[-1] is not None:
            self._text[-1].append(" ")

    def handle_endtag(self, tag: str) -> None:
        if not self._open:
            return
        if tag in _CELL_TAGS or tag == "tr":
            self._close_cell()
        elif tag == "table":
            self._close_cell()
            table, start = self._open.pop()
            self._cell.pop()
            self._text.pop()
            end = self._source.find(">", self._offset())
            table.html = self._source[start : end + 1 if end >= 0 else len(self._source)]
            self.tables.append(table)

    def handle_data(self, data: str) -> None:
        if self._cell and self._cell[-1] is not None:
            self._text[-1].append(data)

    def close(self) -> None:
        super().close()
        while self._open:  # an answer cut off inside a table: keep what was read
            self.handle_endtag("table")

    def _close_cell(self) -> None:
        if self._cell and self._cell[-1] is not None:
            self._cell[-1].text = " ".join("".join(self._text[-1]).split())
            self._cell[-1] = None
            self._text[-1] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return sum(len(text) for text in self._lines[: line - 1]) + column
