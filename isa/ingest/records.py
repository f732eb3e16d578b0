"""The engine's one data model: a preference example with a stable ``row_id``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, Any]  # {"role": ..., "content": ...}
Text = str | list[Message]
ExampleKind = Literal["pair", "unpaired"]


@dataclass(slots=True)
class Example:
    """One normalised source row.

    A ``pair`` has ``chosen`` and ``rejected``; an ``unpaired`` (KTO) example has
    ``completion`` and ``label``. Texts are strings or, for conversational data, lists
    of ``{role, content}`` messages. ``extra`` keeps every column the shape did not
    consume, and ``raw`` the record exactly as read, so a subset can be written back
    in the input's own shape.
    """

    row_id: str
    row: int
    line: int | None
    kind: ExampleKind
    prompt: Text
    chosen: Text | None = None
    rejected: Text | None = None
    completion: Text | None = None
    label: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list) or isinstance(self.chosen, list) or isinstance(
            self.completion, list
        )


def render_text(text: Text) -> str:
    """Flatten a text or a message list into one string for an encoder."""
    if isinstance(text, str):
        return text
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in text)
