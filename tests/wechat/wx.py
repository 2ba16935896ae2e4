"""Helpers that play WeChat's side of the callback: sign queries, wrap samples, encrypt."""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import xmltodict
from wechatpy.crypto import WeChatCrypto

SAMPLES = Path(__file__).resolve().parent / "fixtures"  # copies of shared/samples/wechat
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, like WeChat's


def sample(name: str, **replace: str) -> str:
    """Return a shared sample message, with tag values substituted (e.g. FromUserName)."""
    text = (SAMPLES / name).read_text(encoding="utf-8")
    parsed = xmltodict.parse(text)
    for key, value in replace.items():
        parsed["xml"][key] = value
    return xmltodict.unparse(parsed, full_document=False)


def sign(token: str, timestamp: str, nonce: str) -> str:
    """Compute WeChat's callback signature: SHA-1 of the sorted, joined token/timestamp/nonce."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def fresh_nonce() -> str:
    """Return a new random nonce, as WeChat sends with every callback (replays are refused)."""
    return str(secrets.randbelow(10**10)).zfill(10)


def signed_query(token: str, timestamp: int | None = None, nonce: str | None = None,
                 **extra: str) -> dict[str, str]:
    """Return the query WeChat puts on a callback (a fresh nonce unless one is given)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = fresh_nonce() if nonce is None else nonce
    return {"signature": sign(token, ts, nonce), "timestamp": ts, "nonce": nonce, **extra}


def encrypt_for_callback(token: str, appid: str, xml: str, nonce: str | None = None):
    """Encrypt ``xml`` as WeChat does in safe mode; return (query, body)."""
    nonce = fresh_nonce() if nonce is None else nonce
    crypto = WeChatCrypto(token, AES_KEY, appid)
    ts = str(int(time.time()))
    envelope = xmltodict.parse(crypto.encrypt_message(xml, nonce, ts))["xml"]
    body = ("<xml><ToUserName><![CDATA[toUser]]></ToUserName>"
            f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>")
    query = signed_query(token, int(ts), nonce, encrypt_type="aes",
                         msg_signature=envelope["MsgSignature"])
    return query, body


def decrypt_reply(token: str, appid: str, reply: str) -> dict:
    """Check the reply's msg signature and decrypt it, as WeChat does; return the fields."""
    envelope = xmltodict.parse(reply)["xml"]
    crypto = WeChatCrypto(token, AES_KEY, appid)
    plain = crypto.decrypt_message(reply, envelope["MsgSignature"], envelope["TimeStamp"],
                                   envelope["Nonce"])
    return xmltodict.parse(plain)["xml"]


def reply_fields(reply: str) -> dict:
    """Parse a plain-mode reply."""
    return xmltodict.parse(reply)["xml"]


def query_of(url: str) -> dict[str, str]:
    """Return the query parameters of ``url`` as a flat dict."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def path_of(url: str) -> str:
    """Return path and query of ``url`` (for the Flask test client)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
