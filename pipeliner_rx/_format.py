"""Bounded text for messages and notes: values and failure chains of any size."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["LIMIT", "add_note", "chain_text", "remove_note", "short_repr"]

LIMIT = 200  # characters of a value's repr shown in a message
_CHAIN = 20  # steps of a failure chain shown in full


def short_repr(value: object, limit: int = LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters; never raises."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not turn an error report into another error
        return f"<unrepresentable {type(value).__name__}>"
    if not isinstance(text, str):
        return f"<unrepresentable {type(value).__name__}>"
    if len(text) > limit:
        return f"{text[: limit - 20]}...<{len(text) - limit + 20} more characters>"
    return text


def chain_text(chain: Sequence[str], separator: str = " -> ") -> str:
    """A data-flow chain, its middle elided when it is long."""
    if len(chain) <= 2 * _CHAIN:
        return separator.join(chain)
    head, tail = chain[: _CHAIN // 2 * 2], chain[-(_CHAIN // 2 * 2 - 1) :]
    hidden = len(chain) - len(head) - len(tail)
    return separator.join([*head, f"... ({hidden} more) ...", *tail])


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)`` once; nothing if the exception refuses notes.

    Some exceptions cannot take a note (a frozen dataclass exception, ``__notes__`` set to a
    tuple): they still reach their waiters, without it.
    """
    try:
        notes = getattr(error, "__notes__", None)
        if notes is None or (isinstance(notes, list) and note not in notes):
            error.add_note(note)
    except Exception:
        pass


def remove_note(error: BaseException, note: str) -> None:
    """Take the note ``note`` (this very string) off ``error``, if it is there."""
    try:
        notes = getattr(error, "__notes__", None)
        if isinstance(notes, list):
            for index in range(len(notes) - 1, -1, -1):
                if notes[index] is note:
                    del notes[index]
                    return
    except Exception:
        pass
