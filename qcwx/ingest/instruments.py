"""Tell which of a lab's analysers a record came from, by the name its sender gave.

Analysers name themselves in many ways: ASTM H-5 ``H500^910YOXH02826^2.2.2.2b`` (model,
serial, software), HL7 OBR-4 ``Mindray^BS-200E``, OBX-18 ``BS800``, a spreadsheet's 仪器
column ``急诊生化分析仪`` or ``cobas c501``. :func:`match_instruments` compares the sent text
with each instrument, strongest evidence first:

1. the **serial** equals the whole text or one of its words;
2. the instrument's **name** (``生化分析仪``) equals the whole text or one of its words;
3. the **model** (or maker + model) equals the whole text, a word, or two adjacent words.

Comparison ignores case, full-width forms, blanks and ``- _ .`` (``BS-2000M`` = ``bs2000m``),
but never matches on part of a word, so ``BS-800`` is not ``BS-8000`` and a maker alone
(``Mindray``) identifies nothing. A lab's saved :class:`~qcwx.ingest.models.InstrumentMapping`
is consulted before all of this (by the caller).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from qcwx.numbers import fold_text

__all__ = ["compact", "describe_instrument", "match_instruments", "sent_forms"]

_SPLIT = re.compile(r"[\s^|,;，；/\\]+")
_DROP = re.compile(r"[\s\-_.·]+")
_MIN_FORM = 2


class _Analyser(Protocol):
    id: int
    maker: str
    model: str
    serial: str | None
    name: str | None


def compact(text: str | None) -> str:
    """Fold ``text`` for comparison: width, case, and blanks/``- _ .`` removed."""
    return _DROP.sub("", fold_text(str(text or "")).upper())


def sent_forms(sent: str) -> set[str]:
    """Return the forms of a sent name to compare: whole, each word, adjacent word pairs."""
    words = [w for w in _SPLIT.split(fold_text(sent)) if w]
    forms = {compact(sent)} | {compact(w) for w in words}
    forms |= {compact(a + b) for a, b in zip(words, words[1:], strict=False)}
    return {f for f in forms if len(f) >= _MIN_FORM}


def _own(inst: _Analyser, kind: str) -> set[str]:
    if kind == "serial":
        values = [inst.serial]
    elif kind == "name":
        values = [inst.name]
    else:
        values = [inst.model, f"{inst.maker}{inst.model}"]
    return {c for c in (compact(v) for v in values if v) if len(c) >= _MIN_FORM}


def match_instruments(sent: str | None, instruments: Iterable[_Analyser]
                      ) -> tuple[list[_Analyser], str | None]:
    """Return the instruments ``sent`` names and how (``serial``/``name``/``model``).

    The strongest kind of evidence that matches anything wins; ([], None) when nothing does.
    """
    if not sent or not sent.strip():
        return [], None
    forms = sent_forms(sent)
    pool: Sequence[_Analyser] = list(instruments)
    for kind in ("serial", "name", "model"):
        hits = [inst for inst in pool if _own(inst, kind) & forms]
        if hits:
            return hits, kind
    return [], None


def describe_instrument(inst: _Analyser) -> str:
    """Return an instrument in the words users know: maker model (serial) name."""
    text = f"{inst.maker} {inst.model}"
    if inst.serial:
        text += f"（{inst.serial}）"
    if inst.name:
        text += f" {inst.name}"
    return text
