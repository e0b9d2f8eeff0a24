"""A griffe extension for the API reference: show reST roles in docstrings as code.

fcn's docstrings cross-reference with Sphinx-style roles (:class:`~fcn.backend.Backend`, :func:`load_model`),
which Markdown would print literally. This turns each into a code span (the last component where the target
starts with ``~``, as Sphinx shows it).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const|term):`(~?)([^`]+)`")


def _as_code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class RestRoles(griffe.Extension):
    """Rewrite reST roles in every docstring to Markdown code spans."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_as_code, obj.docstring.value)
