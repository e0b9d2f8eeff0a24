"""On/off settings read from the environment: one rule for every ``FCN_*`` switch.

A switch is on for 1/true/yes/on and off for 0/false/no/off (any case, spaces around); unset or empty, it takes
its default. Any other value is refused with the variable's name, so a typo never silently picks a path.
"""

from __future__ import annotations

import os

__all__ = ["ON_WORDS", "OFF_WORDS", "env_switch"]

ON_WORDS = ("1", "true", "yes", "on")
OFF_WORDS = ("0", "false", "no", "off")


def env_switch(name: str, default: bool, explicit: bool | None = None) -> bool:
    """``explicit`` when it is given, else what ``$name`` says (``default`` when unset or empty)."""
    if explicit is not None:
        return bool(explicit)
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ON_WORDS:
        return True
    if value in OFF_WORDS:
        return False
    raise ValueError(f"{name}={os.environ[name]!r}: expected {'/'.join(ON_WORDS)} or {'/'.join(OFF_WORDS)}")
