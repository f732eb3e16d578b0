"""MkDocs hooks (mkdocs.yml ``hooks:``): the reference pages made from the code at build
time, so they cannot drift from it.

- ``openapi.json``: the gateway's OpenAPI document (``app.main.app.openapi()``), written
  into the site beside a ReDoc page (``reference/redoc.html``) that renders it with the
  ReDoc build the service itself serves offline (fastapi-offline's, see app/docs.py);
- ``reference/http.md``: its ``<!-- openapi:operations -->`` marker becomes every
  operation (parameters, request body, responses) and every schema;
- ``reference/settings.md``: its ``<!-- settings:table -->`` marker becomes every field of
  ``core.settings.Settings``: environment variable, type, default, and the ``#:`` comment
  above it in core/settings.py.

``python scripts/mkdocs_hooks.py DIR`` writes openapi.json into DIR without building.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = "<!-- openapi:operations -->"
SETTINGS = "<!-- settings:table -->"
METHODS = ("get", "put", "post", "delete", "patch")


def openapi() -> dict[str, Any]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from app.main import app

    return app.openapi()


# --- mkdocs events ----------------------------------------------------------------------

def on_files(files: Any, config: Any) -> Any:
    from importlib.resources import files as package_files

    from fastapi.openapi.docs import get_redoc_html
    from mkdocs.structure.files import File

    files.append(File.generated(config, "openapi.json",
                                content=json.dumps(openapi(), indent=2) + "\n"))
    js = package_files("fastapi_offline") / "static" / "redoc.standalone.js"
    files.append(File.generated(config, "assets/redoc/redoc.standalone.js",
                                abs_src_path=str(js)))
    page = get_redoc_html(openapi_url="../openapi.json", title="ISA service HTTP API - ReDoc",
                          redoc_js_url="../assets/redoc/redoc.standalone.js",
                          with_google_fonts=False)
    files.append(File.generated(config, "reference/redoc.html", content=page.body.decode()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if OPERATIONS in markdown:
        markdown = markdown.replace(OPERATIONS, operations_markdown(openapi()))
    if SETTINGS in markdown:
        markdown = markdown.replace(SETTINGS, settings_markdown())
    return markdown


# --- the HTTP reference -----------------------------------------------------------------

def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") if text not in (None, "") else ""


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in a few words: ``string``, ``integer | null``, ``Budget``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " \\| ".join(_type(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    return str(schema.get("type", "any"))


def _body(request: dict[str, Any]) -> list[str]:
    lines = []
    for media, content in request.get("content", {}).items():
        lines.append(f"- `{media}`: {_type(content.get('schema', {}))}")
    return lines


def operations_markdown(spec: dict[str, Any]) -> str:
    out: list[str] = []
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in spec["paths"].items():
        for method in METHODS:
            if method in ops:
                op = ops[method]
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append(
                    (method, path, op))
    out.append("## Operations\n")
    for tag, ops in by_tag.items():
        out.append(f"### {tag}\n")
        for method, path, op in ops:
            out.append(f"#### `{method.upper()} {path}`\n")
            if op.get("summary"):
                out.append(f"*{op['summary']}*\n")
            if op.get("description"):
                out.append(op["description"].strip() + "\n")
            params = op.get("parameters", [])
            if params:
                out.append("| parameter | in | required | type | description |")
                out.append("| --- | --- | --- | --- | --- |")
                for p in params:
                    out.append(f"| `{p['name']}` | {p['in']} | "
                               f"{'yes' if p.get('required') else 'no'} | "
                               f"{_type(p.get('schema', {}))} | "
                               f"{_cell(p.get('description'))} |")
                out.append("")
            if "requestBody" in op:
                out.append("Request body:\n")
                out += _body(op["requestBody"])
                out.append("")
            out.append("| status | meaning |")
            out.append("| --- | --- |")
            for code, response in op.get("responses", {}).items():
                out.append(f"| {code} | {_cell(response.get('description'))} |")
            out.append("")
    out.append("## Schemas\n")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        out.append(f'### {name} {{ #schema-{name.lower()} }}\n')
        if schema.get("description"):
            out.append(schema["description"].strip() + "\n")
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            out.append("| field | type | required | default | description |")
            out.append("| --- | --- | --- | --- | --- |")
            for field, prop in props.items():
                default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
                out.append(f"| `{field}` | {_type(prop)} | "
                           f"{'yes' if field in required else 'no'} | {default} | "
                           f"{_cell(prop.get('description'))} |")
            out.append("")
        elif not schema.get("description"):
            out.append(f"{_type(schema)}\n")
    return "\n".join(out)


# --- the settings reference -------------------------------------------------------------

def _comments(source: str) -> dict[str, tuple[str, str]]:
    """Each field of ``class Settings``: (its annotation, the ``#:`` lines above it)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    found = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            notes, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                notes.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            found[node.target.id] = (ast.get_source_segment(source, node.annotation) or "",
                                     " ".join(notes))
    return found


def settings_markdown() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from core.settings import Settings

    notes = _comments((ROOT / "core" / "settings.py").read_text())
    out = ["| variable | type | default | what |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        annotation, note = notes.get(name, ("", ""))
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None else f"`{_cell(json.dumps(default, default=str))}`"
        out.append(f"| `ISA_{name.upper()}` | `{_cell(annotation)}` | {shown} | {_cell(note)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target.mkdir(parents=True, exist_ok=True)
    (target / "openapi.json").write_text(json.dumps(openapi(), indent=2) + "\n")
    print(target / "openapi.json")
