"""Registry of import formats and the single entry point :func:`parse_bytes`.

Each format module calls :func:`register` once at import time (Redash's ``register()``
pattern); :mod:`qcwx.ingest.formats` imports the built-in ones.  Detection asks the formats in
``priority`` order (lower first) and takes the first whose ``detect`` says yes, so the
permissive CSV fallback is asked last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .records import ParseError, ParseResult

__all__ = ["Format", "detect_format", "format_names", "parse_bytes", "register"]

logger = logging.getLogger(__name__)

Detect = Callable[[bytes], bool]
Parse = Callable[[bytes, Mapping[str, Any]], ParseResult]

#: Option keys every format accepts.
COMMON_OPTIONS = frozenset({"qc_sample_id_pattern", "max_records"})


@dataclass(frozen=True)
class Format:
    """One registered import format."""

    name: str
    detect: Detect
    parse: Parse
    priority: int = 100
    options: frozenset[str] = frozenset()


_FORMATS: dict[str, Format] = {}


def register(
    name: str,
    detect: Detect,
    parse: Parse,
    *,
    priority: int = 100,
    options: frozenset[str] | set[str] = frozenset(),
) -> Format:
    """Register (or replace) the format ``name``.

    ``detect(data)`` must be cheap and never raise; ``parse(data, options)`` returns a
    :class:`ParseResult` and raises only :class:`ParseError`.  ``options`` names the
    option keys the format understands (checked by :func:`parse_bytes`).
    """
    if not name or not isinstance(name, str):
        raise ValueError("format name must be a non-empty string")
    fmt = Format(name, detect, parse, priority, frozenset(options))
    _FORMATS[name] = fmt
    logger.debug("registered import format %s", name)
    return fmt


def format_names() -> tuple[str, ...]:
    """Return the registered format names in detection order."""
    return tuple(f.name for f in sorted(_FORMATS.values(), key=lambda f: f.priority))


def detect_format(data: bytes) -> str:
    """Return the name of the first format that recognises ``data``, or raise ParseError."""
    for fmt in sorted(_FORMATS.values(), key=lambda f: f.priority):
        try:
            if fmt.detect(data):
                return fmt.name
        except Exception:  # a detector bug must not hide the other formats
            logger.exception("format detector %s failed", fmt.name)
    raise ParseError("无法识别文件格式：支持 ASTM、HL7、CSV 和 XLSX 文件")


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise ParseError("上传内容不是文件数据")


def _check_options(options: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ParseError("导入选项格式错误")
    known = set(COMMON_OPTIONS).union(*(f.options for f in _FORMATS.values()))
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        raise ParseError(f"未知的导入选项：{'、'.join(unknown)}")
    return options


def parse_bytes(
    data: bytes, format: str | None = None, options: Mapping[str, Any] | None = None
) -> ParseResult:
    r"""Parse an upload into plain records without touching the database.

    ``format`` forces a registered format (``astm``, ``hl7``, ``csv``, ``xlsx``);
    None detects it: MLLP block or ``MSH|`` → hl7, ENQ/STX framing or ``H|\^&`` → astm,
    ``PK\x03\x04`` → xlsx, other text → csv.  Files that cannot be read at all raise
    :class:`ParseError` (Chinese message); problems with single frames, messages,
    records or rows are returned in :attr:`ParseResult.errors`.  Nothing else escapes:
    an unexpected parser failure is logged and raised as ``ParseError(internal=True)``.
    """
    raw = _as_bytes(data)
    opts = _check_options(options)
    if not raw.strip():
        raise ParseError("文件为空")
    name = format.strip().lower() if isinstance(format, str) else format
    if name is None:
        name = detect_format(raw)
    fmt = _FORMATS.get(name) if isinstance(name, str) else None
    if fmt is None:
        raise ParseError(f"不支持的格式：{format}（可选：{'、'.join(format_names())}）")
    try:
        return fmt.parse(raw, opts)
    except ParseError:
        raise
    except RecursionError as exc:
        raise ParseError("文件结构过于复杂，无法解析") from exc
    except Exception as exc:
        logger.exception("import format %s failed on %d bytes", fmt.name, len(raw))
        raise ParseError("文件解析失败（内部错误），请联系管理员", internal=True) from exc
