"""``isa`` — the selection engine on the command line, in-process (no service needed).

    isa select data.jsonl.gz --method isa --budget 0.05 --out subset.jsonl --scores scores.parquet
    isa methods
    isa validate data.jsonl.gz --on-invalid skip
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workers.engine import (
    EXPORT_SHAPES,
    FILE_FORMATS,
    SHAPES,
    TEMPLATES,
    Budget,
    CausalLMEncoder,
    EngineError,
    PreferenceFile,
    SentenceTransformerEncoder,
    describe_methods,
    make_method,
    run_selection,
    write_scores,
    write_subset,
)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Choose small, high-value subsets of LLM preference data (ISA).")
err = Console(stderr=True, soft_wrap=True)

ENCODERS = ("sentence", "causal-lm")


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values read as JSON when they parse (numbers, null, true)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint="--param")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _open(input_: Path, fmt: str | None, shape: str | None, column_map: str | None,
          id_field: str | None, on_invalid: str) -> PreferenceFile:
    mapping = None
    if column_map:
        try:
            mapping = json.loads(column_map)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--column-map") from exc
    return PreferenceFile(input_, file_format=fmt, shape=shape, column_map=mapping,  # type: ignore[arg-type]
                          id_field=id_field, on_invalid=on_invalid)  # type: ignore[arg-type]


def _fail(exc: EngineError) -> None:
    err.print(f"[bold red]error[/] {escape(f'[{exc.code}] {exc.message}')}")
    raise typer.Exit(2)


@app.command()
def select(
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="preference data file")],
    out: Annotated[Path, typer.Option(help="subset file (.jsonl/.json/.parquet/.csv[.gz])")],
    method: Annotated[str, typer.Option(help="selection method (see `isa methods`)")] = "isa",
    budget: Annotated[str, typer.Option(help="fraction (0.05), percent (5%) or count (500)")]
    = "0.05",
    scores: Annotated[Path | None, typer.Option(help="write per-row scores here")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="method parameter key=value"
                                             )] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="random_state of the method")] = 0,
    level: Annotated[str, typer.Option(help="auto | pair (keep pairs, DPO) | item (KTO items)")]
    = "auto",
    template: Annotated[str, typer.Option(help=f"embedded text: {' | '.join(TEMPLATES)}")]
    = "prompt_completion",
    export: Annotated[str, typer.Option("--format", "--export",
                                        help=f"subset shape: {' | '.join(EXPORT_SHAPES)}; "
                                        "default: input (kto for item level)")] = "",
    encoder: Annotated[str, typer.Option(help="sentence | causal-lm")] = "sentence",
    model: Annotated[str | None, typer.Option(help="encoder model name or local path")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N]")] = "auto",
    precision: Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")] = "auto",
    batch_size: Annotated[int | None, typer.Option(help="encoder batch size")] = None,
    fmt: Annotated[str | None, typer.Option("--input-format", help=f"input container: "
                                            f"{' | '.join(FILE_FORMATS)} (default: detect)")]
    = None,
    shape: Annotated[str | None, typer.Option(help=f"input shape: {' | '.join(SHAPES)} "
                                              "(default: detect)")] = None,
    column_map: Annotated[str | None, typer.Option(help='JSON, e.g. {"prompt": "question"}')]
    = None,
    id_field: Annotated[str | None, typer.Option(help="column to use as row_id")] = None,
    on_invalid: Annotated[str, typer.Option(help="fail | skip")] = "fail",
    summary: Annotated[Path | None, typer.Option(help="write a JSON run summary here")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Select a subset of INPUT and write it (and optionally per-row scores)."""
    # Checked before any work: a typo must not cost an embedding pass.
    if encoder not in ENCODERS:
        raise typer.BadParameter(f"expected one of {', '.join(ENCODERS)}",
                                 param_hint="--encoder")
    if export and export not in EXPORT_SHAPES:
        raise typer.BadParameter(f"expected one of {', '.join(EXPORT_SHAPES)}",
                                 param_hint="--format")
    if template not in TEMPLATES:
        raise typer.BadParameter(f"expected one of {', '.join(TEMPLATES)}",
                                 param_hint="--template")
    try:
        data = _open(input_, fmt, shape, column_map, id_field, on_invalid)
        params = {"random_state": seed, **_parse_params(param)}
        chosen = make_method(method, **params)
        bud = Budget.parse(budget)

        def load_encoder() -> Any:
            kwargs: dict[str, Any] = {"device": device, "precision": precision}
            if batch_size:
                kwargs["batch_size"] = batch_size
            if encoder == "sentence":
                return SentenceTransformerEncoder(model or "all-MiniLM-L6-v2", **kwargs)
            return CausalLMEncoder(model or "SmolLM2-135M-Instruct", **kwargs)

        with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, disable=quiet, transient=False) as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total or None)
                bar.update(tasks[stage], completed=done, total=total or None)

            result = run_selection(data, chosen, bud, encoder=load_encoder, level=level,  # type: ignore[arg-type]
                                   template=template, progress=progress)
            shape_out = export or ("kto" if result.units.level == "item" and
                                   result.units.sides[0] != "completion" else "input")
            progress("writing", 0, result.n_selected)
            written = write_subset(data, result, out, shape=shape_out)
            if scores is not None:
                write_scores(result, scores)
            progress("writing", result.n_selected, result.n_selected)
    except EngineError as exc:
        _fail(exc)
        return
    info = result.summary() | {"out": str(out), "export": shape_out, "records_written": written,
                               "scores": str(scores) if scores else None}
    if summary is not None:
        summary.write_text(json.dumps(info, indent=2, default=str))
    rep = result.ingest
    err.print(f"[green]selected[/] {result.n_selected:,} of {len(result.units):,} "
              f"{result.units.level}s with {method} → {out} ({written:,} records)")
    if rep.rows_skipped:
        err.print(f"[yellow]skipped[/] {rep.rows_skipped:,} invalid rows: "
                  f"{dict(rep.skipped_by_code)}")
    if result.embed_stats:
        s = result.embed_stats
        err.print(f"embedded {s.embedded:,} distinct texts of {s.texts:,} "
                  f"({s.texts - s.unique:,} repeats skipped)")


@app.command()
def methods(as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False
            ) -> None:
    """List selection methods and their parameters."""
    described = describe_methods()
    if as_json:
        typer.echo(json.dumps(described, indent=2, default=str))
        return
    console = Console()
    for m in described:
        table = Table(title=f"{m['name']} — {m['summary']}", title_justify="left",
                      show_edge=False)
        table.add_column("parameter")
        table.add_column("default")
        table.add_column("type")
        for p in m["params"]:
            table.add_row(p["name"], repr(p["default"]), str(p["type"]))
        console.print(table)
        console.print()


@app.command()
def validate(
    input_: Annotated[Path, typer.Argument(metavar="INPUT")],
    fmt: Annotated[str | None, typer.Option("--input-format")] = None,
    shape: Annotated[str | None, typer.Option()] = None,
    column_map: Annotated[str | None, typer.Option()] = None,
    id_field: Annotated[str | None, typer.Option()] = None,
    on_invalid: Annotated[str, typer.Option(help="fail | skip")] = "skip",
) -> None:
    """Read INPUT and print its ingest report (shape, rows, skipped rows) as JSON."""
    try:
        data = _open(input_, fmt, shape, column_map, id_field, on_invalid)
        for _ in data:
            pass
    except EngineError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps(data.report.to_dict(), indent=2))


def main() -> None:  # pragma: no cover
    sys.exit(app())
