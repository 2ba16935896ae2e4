"""Label tokens, label sheets and photo decoding.

The token is ``URLSafeSerializer(SECRET_KEY, salt=TOKEN_SALT)`` over ``[test_system_id,
label_version]``: readable but not forgeable (HMAC), so a label cannot be made up for another
test system, and bumping ``TestSystem.label_version`` makes every printed copy of the old label
answer "标签已失效". The salt keeps these signatures useless anywhere else the secret signs
(sessions, CSRF). Changing ``SECRET_KEY`` invalidates every printed label, like every session.

Access goes through :mod:`qcwx.orgs.scopes`: a label of a lab outside the actor's scope answers
404 exactly like a forged one, and that check comes before the revocation check, so a stranger
cannot learn whether a label was revoked. Services flush, never commit.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import qrcode
import zxingcpp
from flask import current_app
from itsdangerous import BadData, URLSafeSerializer
from markupsafe import Markup
from PIL import Image, UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from qcwx.catalog.models import Analyte, Instrument, QcLot, TestSystem
from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, User
from qcwx.orgs.scopes import get_lab_object, require_role, scoped
from qcwx.web.urls import public_url

log = logging.getLogger(__name__)

__all__ = [
    "LABEL_PATH",
    "LabelItem",
    "LabelRevoked",
    "LabelSheet",
    "decode_image",
    "find_label_token",
    "label_sheet",
    "label_url",
    "origin_of",
    "printable_test_system",
    "labs_for_labels",
    "make_token",
    "qr_png",
    "qr_svg",
    "read_token",
    "regenerate_label",
    "resolve_label",
    "resolve_photo",
]

TOKEN_SALT = "qcwx.label.v1"  # noqa: S105 - a namespace for signatures, not a secret
LABEL_PATH = "/s/"
REGENERATOR_ROLES = ("supervisor", "director", "center", "admin")
# Q (25 %) survives reagent splashes and fridge condensation; the URL still fits version 5.
ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_Q
QUIET_ZONE = 4  # modules; ISO/IEC 18004 requires 4
MAX_PHOTO_BYTES = 15 * 1024 * 1024
MAX_PHOTO_PIXELS = 50_000_000
DECODE_MAX_SIDE = 2400  # zxing is fast below this and a label still spans >100 px
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$")


class LabelRevoked(UserError):
    """The label was revoked (regenerated) or its test system retired: reprint it."""

    status = 410

    def __init__(self, message: str = "标签已失效，请重新打印", field: str | None = "token"):
        super().__init__(message, field)


# ---------------------------------------------------------------- tokens
def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


def make_token(ts: TestSystem) -> str:
    """Return the signed token printed in ``ts``'s current label."""
    return _serializer().dumps([ts.id, ts.label_version])


def read_token(token: str) -> tuple[int, int]:
    """Return ``(test_system_id, label_version)`` from a token, or 404 if it is not ours.

    A forged, truncated or tampered token is a 404 ("not one of our labels"), never a 500.
    """
    try:
        payload = _serializer().loads(token)
    except (BadData, UnicodeError, ValueError):
        raise NotFound("二维码无效：不是本平台的质控标签", field="token") from None
    if (not isinstance(payload, list) or len(payload) != 2
            or not all(type(x) is int for x in payload)):
        raise NotFound("二维码无效：不是本平台的质控标签", field="token")
    return payload[0], payload[1]


def label_url(ts: TestSystem) -> str:
    """Return the absolute URL printed in ``ts``'s label: ``{BASE_URL}/s/<token>``."""
    return public_url(f"{LABEL_PATH}{make_token(ts)}")


def resolve_label(actor: User, token: str) -> TestSystem:
    """Return the test system a scanned label points at, for ``actor``.

    Raises ``NotFound`` (404) for forged tokens and labels outside the actor's scope, and
    ``LabelRevoked`` (410) for an old label version or a retired test system.
    """
    ts_id, version = read_token(token)
    ts = get_lab_object(actor, TestSystem, ts_id)
    if not ts.active:
        raise LabelRevoked("该检测系统已停用，标签已失效")
    if version != ts.label_version:
        raise LabelRevoked()
    return ts


def printable_test_system(actor: User, ts_id: int) -> TestSystem:
    """Return an active test system in scope whose label may be printed (404/410 otherwise)."""
    ts = get_lab_object(actor, TestSystem, ts_id)
    if not ts.active:
        raise LabelRevoked("该检测系统已停用，不再打印标签")
    return ts


def regenerate_label(actor: User, ts_id: int) -> TestSystem:
    """Bump the test system's label version so every printed copy of the old label is void.

    Used when a label is lost, stuck on the wrong analyser or copied. The row is locked so two
    supervisors pressing at once end up with two distinct versions, not one.
    """
    require_role(actor, *REGENERATOR_ROLES)
    get_lab_object(actor, TestSystem, ts_id)  # scope check: 404 outside it
    ts = db.session.scalars(
        select(TestSystem).where(TestSystem.id == ts_id).with_for_update()
        .execution_options(populate_existing=True)).one()
    ts.label_version += 1
    db.session.flush()
    log.info("label of test system %s regenerated (version %s)", ts.id, ts.label_version)
    return ts


# ---------------------------------------------------------------- QR rendering
def _qr_matrix(data: str) -> list[list[bool]]:
    code = qrcode.QRCode(error_correction=ERROR_CORRECTION, border=QUIET_ZONE)
    code.add_data(data)
    code.make(fit=True)
    return code.get_matrix()


def qr_svg(data: str) -> Markup:
    """Return an inline SVG of ``data`` as a QR code, quiet zone included, sized by CSS.

    One path of horizontal runs keeps it small (a sheet holds dozens) and free of hairline
    seams between modules; ``crispEdges`` keeps module edges sharp when printed.
    """
    matrix = _qr_matrix(data)
    size = len(matrix)
    runs = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if row[x]:
                start = x
                while x < size and row[x]:
                    x += 1
                runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    # Only integers we computed go into the markup: nothing user-supplied to escape.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'shape-rendering="crispEdges" role="img" aria-label="质控标签二维码">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>')


def qr_png(data: str, box_size: int = 12) -> bytes:
    """Return ``data`` as a PNG QR code (for label-printer software), quiet zone included."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECTION, border=QUIET_ZONE,
                         box_size=box_size)
    code.add_data(data)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image(fill_color="black", back_color="white").save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------- label sheet
@dataclass(frozen=True)
class LabelItem:
    """One label as printed: the code and the Chinese lines under it."""

    test_system_id: int
    url: str
    svg: Markup
    analyte: str
    analyte_code: str
    instrument: str
    lot_number: str
    material: str
    levels: str
    version: int


@dataclass(frozen=True)
class LabelSheet:
    """A lab's labels, one per active test system, in a stable order."""

    lab: Lab
    items: tuple[LabelItem, ...]


def _label_item(ts: TestSystem) -> LabelItem:
    url = label_url(ts)
    inst = ts.instrument
    instrument = f"{inst.maker} {inst.model}" + (f"（{inst.serial}）" if inst.serial else "")
    return LabelItem(
        test_system_id=ts.id, url=url, svg=qr_svg(url), analyte=ts.analyte.name,
        analyte_code=ts.analyte.code, instrument=instrument, lot_number=ts.qc_lot.lot_number,
        material=ts.qc_lot.material.name, levels="、".join(lv.name for lv in ts.levels),
        version=ts.label_version)


def label_sheet(actor: User, lab_id: int) -> LabelSheet:
    """Return the label sheet of ``lab_id``: every active test system, 404 outside scope."""
    lab = get_lab_object(actor, Lab, lab_id, lab_attr="id")
    stmt = scoped(
        select(TestSystem).join(Analyte, TestSystem.analyte_id == Analyte.id)
        .join(Instrument, TestSystem.instrument_id == Instrument.id)
        .where(TestSystem.lab_id == lab.id, TestSystem.active.is_(True))
        .options(selectinload(TestSystem.levels), selectinload(TestSystem.analyte),
                 selectinload(TestSystem.instrument),
                 selectinload(TestSystem.qc_lot).selectinload(QcLot.material))
        .order_by(Analyte.code, Instrument.maker, Instrument.model, TestSystem.id),
        actor, TestSystem.lab_id)
    systems = db.session.scalars(stmt).all()
    return LabelSheet(lab=lab, items=tuple(_label_item(ts) for ts in systems))


def labs_for_labels(actor: User) -> list[tuple[Lab, int]]:
    """Return the labs in scope with their number of active test systems, by hospital."""
    count = (select(func.count(TestSystem.id))
             .where(TestSystem.lab_id == Lab.id, TestSystem.active.is_(True))
             .scalar_subquery())
    stmt = scoped(
        select(Lab, count).join(Hospital, Lab.hospital_id == Hospital.id)
        .options(selectinload(Lab.hospital)).order_by(Hospital.name, Lab.name, Lab.id),
        actor, Lab.id)
    return [(lab, n) for lab, n in db.session.execute(stmt).all()]


# ---------------------------------------------------------------- photo decoding
def decode_image(data: bytes) -> list[str]:
    """Return the texts of every QR code zxing-cpp finds in a photo (possibly none).

    Large phone photos are scaled down first: decoding stays in milliseconds and a label
    that fills a reasonable part of the frame keeps well over a pixel per module.
    """
    if not data:
        raise UserError("请选择要识别的照片", field="image")
    if len(data) > MAX_PHOTO_BYTES:
        raise UserError("照片过大，请不超过 15 MB", field="image", status=413)
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PHOTO_PIXELS:
            raise UserError("照片分辨率过高，请降低后重试", field="image", status=413)
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        raise UserError("无法读取该图片，请上传 JPG 或 PNG 格式的照片", field="image") from None
    img = img.convert("L")
    if max(img.size) > DECODE_MAX_SIDE:
        img.thumbnail((DECODE_MAX_SIDE, DECODE_MAX_SIDE), Image.Resampling.LANCZOS)
    for attempt in _DECODE_ATTEMPTS:  # the first that finds a code wins; most need one
        found = attempt(img)
        if found:
            break
    return [b.text for b in found if b.valid and b.text]


def _qr_codes(img: Image.Image, **options) -> list:
    return zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode, **options)


#: How a photo is read, in order: zxing's local threshold; a global one, which helps unevenly
#: lit photos; the photo at 3/4 size, which moves the module edges off the pixel grid that
#: blur and JPEG had smeared (about 1 in 2,500 of the tests' hurried photos needed it; zxing's
#: own pyramid only divides by 3).
_DECODE_ATTEMPTS = (
    _qr_codes,
    lambda img: _qr_codes(img, binarizer=zxingcpp.Binarizer.GlobalHistogram),
    lambda img: _qr_codes(img.resize((img.width * 3 // 4, img.height * 3 // 4),
                                     Image.Resampling.LANCZOS)),
)


def origin_of(url: str) -> str:
    """Return ``scheme://host[:port]`` of ``url`` in lower case (how origins compare)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def find_label_token(texts: list[str], origins: set[str]) -> str:
    """Return the one label token among decoded ``texts``; Chinese 400s otherwise.

    A text counts as ours when it is ``<origin>/s/<token>`` for one of ``origins`` (the public
    BASE_URL and the host the request came in on) or a bare token; the signature is checked
    later by :func:`resolve_label`.
    """
    if not texts:
        raise UserError("未识别到二维码，请对准标签、保持清晰后重新拍照", field="image")
    tokens = []
    for text in texts:
        token = _token_from_text(text.strip(), origins)
        if token and token not in tokens:
            tokens.append(token)
    if not tokens:
        raise UserError("不是本平台的质控标签", field="image")
    if len(tokens) > 1:
        raise UserError("照片中有多个质控标签，请只拍一个标签", field="image")
    return tokens[0]


def _token_from_text(text: str, origins: set[str]) -> str | None:
    if _TOKEN_RE.match(text):
        return text
    parts = urlsplit(text)
    if origin_of(text) not in origins or not parts.path.startswith(LABEL_PATH):
        return None
    token = parts.path[len(LABEL_PATH):].rstrip("/")
    return token if _TOKEN_RE.match(token) else None


def resolve_photo(actor: User, data: bytes, origins: set[str]) -> TestSystem:
    """Decode a photo of a label and return its test system (the server-side scan)."""
    token = find_label_token(decode_image(data), origins)
    try:
        read_token(token)
    except NotFound:  # our URL shape but a bad signature: bad input, not a missing object
        raise UserError("不是本平台的质控标签", field="image") from None
    return resolve_label(actor, token)
