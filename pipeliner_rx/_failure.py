"""How a step's failure reads on its error: who raised, and the chain to what was demanded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._format import add_note, chain_text, remove_note

if TYPE_CHECKING:
    from ._activation import Activation
    from ._step import Step

__all__ = ["Failure", "failure_chain", "stop_iteration_error"]


def stop_iteration_error(step: Step[Any], error: StopIteration) -> RuntimeError:
    replacement = RuntimeError(
        f"`{step.name}` raised StopIteration, which asyncio cannot deliver to a waiter; it is "
        f"raised as this RuntimeError instead (see its __cause__)."
    )
    replacement.__cause__ = error
    return replacement


class Failure:
    """One step's failure as its error's notes tell it.

    The step that raised is noted on the error at once. The data-flow chain from it to what a
    caller demanded is noted only while a single caller has heard of the error: the instance
    is shared by every waiter, and no caller may see a note about another caller's demand.
    """

    __slots__ = ("callers", "error", "note")

    def __init__(self, error: BaseException, step: Step[Any], attempts: int) -> None:
        self.error = error
        names = ", ".join(f"`{name}`" for name in step.provides)
        tries = f" in each of {attempts} attempts" if attempts > 1 else ""
        _strip_library_notes(error)
        add_note(
            error,
            f"{_RAISED}`{step.name}`{tries}" + (f", which provides {names}." if names else "."),
        )
        self.callers = 0
        self.note: str | None = None

    def reached(self, what: str, chain: list[str]) -> None:
        """A caller waiting for ``what`` hears of the error, which came along ``chain``."""
        self.callers += 1
        if self.callers == 1 and len(chain) > 1:
            self.note = f"{what}{_STOPPED}{chain_text(chain)}."
            add_note(self.error, self.note)
        elif self.note is not None:
            remove_note(self.error, self.note)
            self.note = None


_RAISED = "Raised by step "
_STOPPED = " could not be computed: "


def failure_chain(activation: Activation) -> list[str]:
    """Data-flow chain from the step that raised to ``activation``: step, resource, step, ..."""
    chain = [activation.step.label]
    cause = activation.cause
    while cause is not None:
        name, upstream = cause
        chain += [name, upstream.step.label]
        cause = upstream.cause
    chain.reverse()
    return chain


def _strip_library_notes(error: BaseException) -> None:
    # The same exception instance raised again: the notes of its earlier failure are stale.
    try:
        notes = getattr(error, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [n for n in notes if not (n.startswith(_RAISED) or _STOPPED in n)]
    except Exception:
        pass
