"""Server-side paging and sorting of the centre's long lists (matrix, NCCL, exception report).

Pure parsing and slicing, like :mod:`qcwx.peer.filters`: a malformed ``page`` or ``sort`` is a
``UserError`` naming the field (a 400 in Chinese); a page past the end shows the last page, so a
link kept while the list shrank still lands on data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from qcwx.errors import UserError

T = TypeVar("T")

#: Rows per page of every paged centre list.
PER_PAGE = 50
#: Longest page number accepted (a million pages is far beyond any list here).
_MAX_DIGITS = 6


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items, its 1-based number and the list's total count."""

    items: list[T]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """Return the number of pages (1 for an empty list)."""
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        """Return the 1-based position of the page's first item (0 when empty)."""
        return (self.number - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        """Return the 1-based position of the page's last item (0 when empty)."""
        return self.first + len(self.items) - 1 if self.items else 0

    @property
    def has_prev(self) -> bool:
        """Return whether a previous page exists."""
        return self.number > 1

    @property
    def has_next(self) -> bool:
        """Return whether a next page exists."""
        return self.number < self.pages


def page_number(args: Mapping, name: str = "page") -> int:
    """Return the requested page number (default 1), or raise ``UserError`` naming ``name``.

    Only ASCII digits are accepted: ``"²"`` passes ``str.isdigit`` but not ``int``.
    """
    raw = args.get(name)
    if raw in (None, ""):
        return 1
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS or int(text) < 1:
        raise UserError(f"页码参数无效：{text[:20]}", field=name)
    return int(text)


def paginate(items: Sequence[T], number: int, per_page: int = PER_PAGE) -> Page[T]:
    """Return page ``number`` of ``items``; a number past the end gives the last page."""
    if per_page < 1:
        raise ValueError(f"per_page must be positive, got {per_page}")
    pages = max(1, -(-len(items) // per_page))
    number = min(max(1, number), pages)
    start = (number - 1) * per_page
    return Page(list(items[start:start + per_page]), number, per_page, len(items))


def choice_arg(args: Mapping, name: str, choices: Mapping[str, str] | Sequence[str],
               default: str, label: str) -> str:
    """Return the query argument ``name`` if it is one of ``choices`` (else ``UserError``)."""
    value = str(args.get(name) or default).strip()
    if value not in choices:
        raise UserError(f"{label}无效：{value[:20]}", field=name)
    return value
