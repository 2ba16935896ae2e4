"""HL7 v2 transport and segment access: MLLP blocks, charsets, separators, fields.

MLLP blocks (``VT … FS CR``) are unwrapped; segments may be separated by CR, LF or CR LF;
several messages may follow each other; batch headers (FHS/BHS) are dropped. Field
accessors take the standard's 1-based field numbers and never raise on short segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Message", "Seps", "detect", "observation_value", "separators", "split_messages"]

VT, FS = b"\x0b", b"\x1c"
_HEAD = re.compile(rb"(?:MSH|FHS|BHS)[^\w\s]")
_BATCH_SEGMENTS = {"FHS", "FTS", "BHS", "BTS"}
_CHARSETS = {
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "GB 18030-2000": "gb18030",
    "GB18030": "gb18030", "GBK": "gb18030", "GB2312": "gb18030", "8859/1": "latin-1",
}


def detect(data: bytes) -> bool:
    """Say whether ``data`` is HL7 v2: an MLLP block or text starting with ``MSH|``."""
    head = data.lstrip(b"\x00\r\n\t ")[:8]
    return head[:1] == VT or bool(_HEAD.match(head))


def _blocks(data: bytes) -> list[bytes]:
    if VT not in data:
        return [data]
    parts = data.split(VT)
    blocks = [parts[0]] if b"MSH" in parts[0] else []
    blocks += [part.split(FS, 1)[0] for part in parts[1:]]
    return [b for b in blocks if b.strip()]


def _decode(block: bytes, forced: str | None) -> str:
    declared = None
    match = re.search(rb"MSH(.)", block)
    if match:
        fields = block[match.start() :].split(b"\r", 1)[0].split(match.group(1))
        if len(fields) > 17:
            name = fields[17].decode("latin-1").strip().upper()
            declared = _CHARSETS.get(name)
    for enc in [e for e in (forced, declared) if e] + ["utf-8", "gb18030"]:
        try:
            return block.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
    return block.decode("latin-1")


def split_messages(data: bytes, encoding: str | None = None) -> list[list[str]]:
    """Return each message as its list of segment strings (MLLP and batch headers removed)."""
    messages: list[list[str]] = []
    for block in _blocks(data):
        text = _decode(block, encoding).replace("\r\n", "\r").replace("\n", "\r")
        for segment in text.split("\r"):
            segment = segment.strip("\x00\t \x0b\x1c")
            if not segment or segment[:3] in _BATCH_SEGMENTS:
                continue
            if segment.startswith("MSH") or not messages:
                messages.append([segment])
            else:
                messages[-1].append(segment)
    return messages


@dataclass
class Seps:
    """The message's component, repetition, escape and sub-component characters."""

    component: str
    repeat: str
    escape: str
    sub: str


class Message:
    """One parsed message with safe field accessors (1-based HL7 field numbers)."""

    def __init__(self, msg: Any, seps: Seps) -> None:
        self.msg, self.seps = msg, seps

    def raw(self, seg: Any, number: int) -> str:
        """Return field ``number`` of ``seg`` as sent, or ''."""
        return str(seg[number]) if 0 < number < len(seg) else ""

    def unescape(self, text: str) -> str:
        r"""Resolve HL7 escapes (``\F\`` …); a malformed escape keeps the text."""
        if self.seps.escape not in text:
            return text
        try:
            return str(self.msg.unescape(text))
        except Exception:  # a malformed escape keeps the text as sent
            return text

    def values(self, seg: Any, number: int) -> list[str]:
        """Return the repetitions of a field, or its components when not repeated."""
        text = self.raw(seg, number)
        reps = text.split(self.seps.repeat)
        parts = reps if len(reps) > 1 else text.split(self.seps.component)
        return [self.unescape(p.split(self.seps.sub)[0]).strip() for p in parts]

    def components(self, seg: Any, number: int, rep: int = 0) -> list[str]:
        """Return the components of one repetition of a field (unescaped, stripped)."""
        reps = self.raw(seg, number).split(self.seps.repeat)
        text = reps[rep] if rep < len(reps) else ""
        return [self.unescape(c).strip() for c in text.split(self.seps.component)]

    def first(self, seg: Any, number: int) -> str:
        """Return the first component (first sub-component) of a field."""
        return self.components(seg, number)[0].split(self.seps.sub)[0].strip()

    def joined(self, seg: Any, number: int) -> str | None:
        """Return the field's non-empty components joined by spaces (as sent), or None."""
        return " ".join(p for p in self.components(seg, number) if p) or None


def separators(msh: str) -> Seps | None:
    """Return the separators declared in MSH-1/MSH-2, or None when they are unusable."""
    if len(msh) < 8:
        return None
    sep = msh[3]
    enc = msh[4:].split(sep, 1)[0]
    chars = sep + enc
    if len(enc) < 3 or len(set(chars)) != len(chars):
        return None
    if any(c.isalnum() or c.isspace() for c in chars):
        return None
    return Seps(enc[0], enc[1], enc[2], enc[3] if len(enc) > 3 else "&")


def observation_value(m: Message, seg: Any) -> str:
    """Return OBX-5 as text: an SN value ``<^20`` becomes ``<20``; else the first component."""
    first_rep = m.raw(seg, 5).split(m.seps.repeat)[0]
    comps = [m.unescape(c).strip() for c in first_rep.split(m.seps.component)]
    if m.first(seg, 2).upper() == "SN" and len(comps) > 1:
        return "".join(c for c in comps[:2] if c)
    return next((c for c in comps if c), "")
