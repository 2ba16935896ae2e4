"""What every page view shares: the acting user and the POST-commit-or-show-errors step.

Views stay thin (ARCHITECTURE rule 3): they parse the request, call one service inside
:func:`form_post`, and render. The transaction boundary is here, once — commit when the
service succeeded, roll back and show the Chinese message under its field when it raised a
:class:`~qcwx.errors.UserError` — instead of the same try/commit/except block in every view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask_login import current_user

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs.models import User

__all__ = ["FormResult", "current_actor", "form_post"]


def current_actor() -> User:
    """Return the logged-in user object (not the proxy): services take a plain ``User``."""
    return current_user._get_current_object()


@dataclass
class FormResult:
    """The outcome of one POST: the service's value, or errors by field and the status."""

    value: Any = None
    errors: dict[str, str] = field(default_factory=dict)
    status: int = 200

    @property
    def ok(self) -> bool:
        """Return True when the service succeeded and its work was committed."""
        return not self.errors


def form_post(action: Callable[[], Any]) -> FormResult:
    """Run ``action`` and commit; on a ``UserError`` roll back and report it by field."""
    try:
        value = action()
        db.session.commit()
        return FormResult(value)
    except UserError as exc:
        db.session.rollback()
        return FormResult(None, dict(exc.fields) or {exc.field or "form": exc.message},
                          exc.status)
