"""ASTM LIS1-A transport: frames (``STX FN text ETB|ETX C1 C2 CR LF``) to record lines.

The checksum is the sum of the bytes from FN through ETB/ETX inclusive, modulo 256, as
two hex digits. Intermediate (ETB) frames are concatenated with the next frame; ENQ/ACK/
NAK/EOT between frames are link noise and ignored. Real captures bend the rules and all of
these are accepted: frames holding several CR-separated records, frames longer than 247
characters, frame numbers out of sequence, frames ended by CR, LF, CR LF or nothing. A
frame whose checksum is wrong is reported (naming the frame) and its text dropped with the
rest of its record; a retransmission of the same frame number right after it replaces it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from .records import IssueLog, SourceRef

__all__ = ["decode", "deframe", "detect", "split_records"]

logger = logging.getLogger(__name__)

STX, ETX, ETB, ENQ, ACK, NAK, EOT = 0x02, 0x03, 0x17, 0x05, 0x06, 0x15, 0x04
CR, LF = 0x0D, 0x0A
_LINK_NOISE = frozenset({ENQ, ACK, NAK, EOT, CR, LF, 0x00, 0x09, 0x20})
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_FRAME_NUMBERS = frozenset(b"01234567")
_BARE_HEADER = re.compile(rb"[0-7]?H[^\w\s][^\w\s][^\w\s][^\w\s]")


def detect(data: bytes) -> bool:
    r"""Say whether ``data`` looks like ASTM: ENQ/STX framing or a bare ``H|\^&`` header."""
    head = data.lstrip(bytes(_LINK_NOISE))[:16]
    if head[:1] == bytes([STX]):
        return True
    return bool(_BARE_HEADER.match(head))


@dataclass
class _Deframer:
    data: bytes
    issues: IssueLog
    records: list[tuple[bytes, int]] = field(default_factory=list)
    pending: bytearray = field(default_factory=bytearray)
    pending_frame: int = 0
    resync: bool = False
    ordinal: int = 0
    stray: int = 0

    def run(self) -> list[tuple[bytes, int]]:
        data, pos, end = self.data, 0, len(self.data)
        while pos < end:
            nxt = data.find(STX, pos)
            if nxt < 0:
                self._count_stray(data[pos:])
                break
            self._count_stray(data[pos:nxt])
            pos = self._frame(nxt)
        if self.pending and not self.resync:
            self._emit_tail()
        if self.stray:
            note = f"帧之外有 {self.stray} 个字节无法识别，已忽略"
            self.issues.add(SourceRef("astm"), None, note)
        return self.records

    def _count_stray(self, chunk: bytes) -> None:
        self.stray += sum(1 for b in chunk if b not in _LINK_NOISE)

    def _frame(self, start: int) -> int:
        data = self.data
        self.ordinal += 1
        where = SourceRef("astm", frame=self.ordinal)
        limit = data.find(STX, start + 1)
        limit = len(data) if limit < 0 else limit
        stop = _find_any(data, start + 1, (ETX, ETB), limit)
        if stop < 0:
            self.issues.add(where, None, "帧不完整（缺少 ETX/ETB 结束符），该帧已丢弃")
            self._drop_pending()
            return limit
        body = data[start + 1 : stop]
        number = body[:1] if body[:1] and body[0] in _FRAME_NUMBERS else b""
        text = body[len(number) :]
        given = data[stop + 1 : stop + 3]
        after = stop + 1
        has_sum = len(given) == 2 and all(b in _HEX for b in given)
        if has_sum:
            after += 2
        after += 1 if data[after : after + 1] == b"\r" else 0
        after += 1 if data[after : after + 1] == b"\n" else 0
        expected = sum(data[start + 1 : stop + 1]) % 256
        if has_sum and int(given, 16) != expected:
            if number and self._next_frame_number(after) == number:
                logger.debug("ASTM frame %s retransmitted after a bad checksum", self.ordinal)
                return after
            label = f"（帧号 {number.decode()}）" if number else ""
            self.issues.add(
                where,
                "checksum",
                f"帧{label}校验和错误：应为 {expected:02X}，收到 {given.decode('ascii')}；"
                "该帧数据已丢弃",
            )
            self._drop_pending()
            self.resync = data[stop] == ETB
            return after
        self._take(text, final=data[stop] == ETX)
        return after

    def _next_frame_number(self, pos: int) -> bytes:
        data = self.data
        while pos < len(data) and data[pos] in _LINK_NOISE:
            pos += 1
        if pos + 1 < len(data) and data[pos] == STX:
            return data[pos + 1 : pos + 2]
        return b""

    def _take(self, text: bytes, *, final: bool) -> None:
        if self.resync:
            cut = _find_any(text, 0, (CR, LF))
            if cut < 0:
                self.resync = not final
                return
            text = text[cut:]
            self.resync = False
        if not self.pending:
            self.pending_frame = self.ordinal
        self.pending += text
        if CR in text or LF in text:
            self._emit_complete()
        if final:
            self._emit_tail()

    def _emit_complete(self) -> None:
        parts = re.split(rb"\r\n|\r|\n", bytes(self.pending))
        for part in parts[:-1]:
            if part.strip():
                self.records.append((part, self.pending_frame))
        self.pending = bytearray(parts[-1])
        if len(parts) > 1:
            self.pending_frame = self.ordinal

    def _emit_tail(self) -> None:
        if bytes(self.pending).strip():
            self.records.append((bytes(self.pending), self.pending_frame))
        self.pending = bytearray()

    def _drop_pending(self) -> None:
        self.pending = bytearray()


def _find_any(data: bytes, start: int, needles: tuple[int, ...], end: int | None = None) -> int:
    stop = len(data) if end is None else end
    hits = [i for i in (data.find(n, start, stop) for n in needles) if i >= 0]
    return min(hits) if hits else -1


def deframe(data: bytes, issues: IssueLog | None = None) -> list[tuple[bytes, int | None]]:
    """Return ``(record bytes, first frame ordinal)`` pairs from framed or bare ASTM.

    Bare input (no STX) is split at CR, LF or CR LF; the frame ordinal is then None.
    """
    log = issues if issues is not None else IssueLog("astm")
    if STX in data:
        return list(_Deframer(data, log).run())
    noise = bytes([ENQ, ACK, NAK, EOT, 0x00])
    lines = re.split(rb"\r\n|\r|\n", data.translate(None, noise))
    return [(line, None) for line in lines if line.strip()]


def decode(raw: bytes, encoding: str | None) -> str:
    """Decode a record line: the forced encoding, else UTF-8, GB18030, finally Latin-1."""
    for enc in ([encoding] if encoding else []) + ["utf-8", "gb18030"]:
        try:
            return raw.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("latin-1")


def split_records(data: bytes, encoding: str | None = None) -> list[str]:
    """Return the record lines of framed or bare ASTM (a helper for tests and tools)."""
    return [decode(raw, encoding) for raw, _ in deframe(data)]
