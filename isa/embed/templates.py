"""What text is embedded for a unit: an explicit, named template.

- ``prompt_completion`` (default, the paper's): one text per item, prompt + completion;
  a pair gives its chosen item and its rejected item.
- ``completion``: one text per item, the completion alone.
- ``prompt``: the prompt alone (one text per unit).
- ``pair``: one text per pair: prompt, chosen and rejected together.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..ingest.records import Example, Text, render_text

TEMPLATES: tuple[str, ...] = ("prompt_completion", "completion", "prompt", "pair")


def join_prompt(prompt: Text, completion: Text) -> str:
    p, c = render_text(prompt), render_text(completion)
    if not p:
        return c
    # HH-style prompts end in "Assistant:" and replies start with a space: join them
    # back into the original dialogue text rather than inserting a separator.
    sep = "" if p.endswith(("\n", " ")) or c.startswith((" ", "\n")) else "\n"
    return p + sep + c


def unit_texts(example: Example, side: str | None, template: str) -> list[tuple[str, str]]:
    """``(label, text)`` pairs for one unit: a whole example (``side=None``) or one item."""
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; expected one of {TEMPLATES}",
                          code="unknown_template")
    sides = [side] if side is not None else (
        ["chosen", "rejected"] if example.kind == "pair" else ["completion"])
    if template == "prompt":
        return [("prompt", render_text(example.prompt))]
    if template == "pair":
        if side is not None or example.kind != "pair":
            raise ConfigError("template 'pair' embeds whole pairs: use it with pair-level "
                              "selection on paired data", code="invalid_template")
        return [("pair", join_prompt(example.prompt, render_text(example.chosen or "")) + "\n"
                 + render_text(example.rejected or ""))]
    out = []
    for s in sides:
        completion = getattr(example, s)
        text = (join_prompt(example.prompt, completion) if template == "prompt_completion"
                else render_text(completion))
        out.append((s, text))
    return out
