"""``isa`` — the library on the command line, in-process (no service needed).

    isa select data.jsonl.gz --method isa --budget 0.05 --out subset.jsonl --scores scores.parquet
    isa methods
    isa validate data.jsonl.gz --on-invalid skip
    isa remote select ds_… --budget 5% --out subset.jsonl   # the same work on a service
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .embed.base import DiskEmbeddingCache
from .embed.factory import ENCODERS, make_encoder
from .embed.templates import TEMPLATES
from .errors import EngineError
from .evaluate import runner as evaluation
from .export import EXPORT_SHAPES, write_scores, write_subset
from .ingest.dataset import PreferenceFile
from .ingest.readers import FILE_FORMATS
from .ingest.shapes import SHAPES
from .params import parse_params as _parse_params
from .pipeline import default_export_shapes, run_selection
from .progress import StageBar
from .remote.cli import app as remote_app
from .select import Budget, describe_methods, make_method

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Choose small, high-value subsets of LLM preference data (ISA).")
app.add_typer(remote_app, name="remote")
err = Console(stderr=True, soft_wrap=True)

# Options several commands share, declared once (same names and help everywhere).
EncoderOpt = Annotated[str, typer.Option(help="sentence | causal-lm | static")]
ModelOpt = Annotated[str | None, typer.Option(help="encoder model name or local path")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda[:N]")]
PrecisionOpt = Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")]
BackendOpt = Annotated[str, typer.Option(
    help="sentence encoder runtime: torch | openvino (CPU, about 1.6x faster in bf16; "
         "pip install 'isa-service[openvino]')")]
BACKENDS = ("torch", "openvino")
FormatOpt = Annotated[str | None, typer.Option(
    "--input-format", help=f"input container: {' | '.join(FILE_FORMATS)} (default: detect)")]
ShapeOpt = Annotated[str | None, typer.Option(
    help=f"input shape: {' | '.join(SHAPES)} (default: detect)")]
ColumnMapOpt = Annotated[str | None, typer.Option(
    help='JSON {"your_column": "our_field"}, as pandas\' rename, e.g. {"question": "prompt"}')]
PairingOpt = Annotated[str, typer.Option(
    help="rows of N rated answers (shape ranked) as pairs: best_vs_worst | best_vs_each")]
IdFieldOpt = Annotated[str | None, typer.Option(help="column to use as row_id")]
OnInvalidOpt = Annotated[str, typer.Option(help="fail | skip")]
ParamOpt = Annotated[list[str], typer.Option("--param", "-p", help="method parameter key=value")]
EvalFileOpt = Annotated[Path | None, typer.Option(
    "--eval", help="held-out pairs (default: split the pool by prompt)")]
EvalFractionOpt = Annotated[float, typer.Option(help="share of prompts held out by the split")]
QuietOpt = Annotated[bool, typer.Option(help="no progress bar")]


def _open(input_: Path, fmt: str | None, shape: str | None, column_map: str | None,
          id_field: str | None, on_invalid: str,
          pairing: str = "best_vs_worst") -> PreferenceFile:
    mapping = None
    if column_map:
        try:
            mapping = json.loads(column_map)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--column-map") from exc
    return PreferenceFile(input_, file_format=fmt, shape=shape, column_map=mapping,  # type: ignore[arg-type]
                          id_field=id_field, on_invalid=on_invalid,  # type: ignore[arg-type]
                          pairing=pairing)  # type: ignore[arg-type]


def _reference_factory(model: str, device: str, precision: str,
                       batch_size: int | None) -> Any:
    """The reference scorer, built only if the method reads reference log-probabilities."""
    def build() -> Any:
        from .extras import require

        require("embed", "the reference model", "torch", "transformers")
        from .embed.reference import ReferenceScorer

        return ReferenceScorer(model, device=device, precision=precision,
                               batch_size=batch_size or 8)
    return build


def _encoder_factory(encoder: str, model: str | None, device: str, precision: str,
                     batch_size: int | None, backend: str = "torch") -> Any:
    """The encoder, loaded when called; a bad ``--backend`` fails before any work."""
    if backend not in BACKENDS:
        raise typer.BadParameter(f"expected one of {', '.join(BACKENDS)}",
                                 param_hint="--backend")
    return lambda: make_encoder(encoder, model=model, device=device, precision=precision,
                                batch_size=batch_size, backend=backend)


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
    param: ParamOpt = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="random_state of the method")] = 0,
    level: Annotated[str, typer.Option(help="auto | pair (keep pairs, DPO) | item (KTO items)")]
    = "auto",
    template: Annotated[str, typer.Option(help=f"embedded text: {' | '.join(TEMPLATES)}")]
    = "prompt_completion",
    export: Annotated[str, typer.Option("--format", "--export",
                                        help=f"subset shape: {' | '.join(EXPORT_SHAPES)}; "
                                        "default: input (kto for item level)")] = "",
    encoder: EncoderOpt = "sentence",
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    backend: BackendOpt = "torch",
    batch_size: Annotated[int | None, typer.Option(help="encoder batch size")] = None,
    fmt: FormatOpt = None,
    shape: ShapeOpt = None,
    column_map: ColumnMapOpt = None,
    id_field: IdFieldOpt = None,
    pairing: PairingOpt = "best_vs_worst",
    on_invalid: OnInvalidOpt = "fail",
    reference_model: Annotated[str, typer.Option(
        help="causal LM whose log-probabilities the DPO-native methods read "
             "(implicit_margin, alignment_potential, margin_bayes): a packaged name, a "
             ".gguf file or a local folder")] = "SmolLM2-135M-Instruct",
    summary: Annotated[Path | None, typer.Option(help="write a JSON run summary here")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="keep embeddings here between runs")]
    = None,
    quiet: QuietOpt = False,
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
        data = _open(input_, fmt, shape, column_map, id_field, on_invalid, pairing)
        params = {"random_state": seed, **_parse_params(param)}
        chosen = make_method(method, **params)
        bud = Budget.parse(budget)

        load_encoder = _encoder_factory(encoder, model, device, precision, batch_size,
                                        backend)
        with StageBar(not quiet, console=err) as progress:
            cache = DiskEmbeddingCache(cache_dir) if cache_dir else None
            result = run_selection(data, chosen, bud, encoder=load_encoder, level=level,  # type: ignore[arg-type]
                                   template=template, cache=cache, progress=progress,
                                   reference=_reference_factory(reference_model, device,
                                                                precision, batch_size))
            if cache is not None:
                cache.save()
            shape_out = export or default_export_shapes(result.units)[0]
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


def _bounds_text(bounds: dict[str, Any]) -> str:
    """``[1, 64]``, ``(0, 1]``, ``≥ 1``: a parameter's range as a reader writes it."""
    lo = bounds.get("minimum", bounds.get("exclusiveMinimum"))
    hi = bounds.get("maximum", bounds.get("exclusiveMaximum"))
    left = "(" if "exclusiveMinimum" in bounds else "["
    right = ")" if "exclusiveMaximum" in bounds else "]"
    def num(v: float) -> str:
        return f"{v:,}" if isinstance(v, int) else f"{v:g}"

    if lo is not None and hi is not None:
        return f"{left}{num(lo)}, {num(hi)}{right}"
    if lo is not None:
        return f"{'>' if left == '(' else '≥'} {num(lo)}"
    if hi is not None:
        return f"{'<' if right == ')' else '≤'} {num(hi)}"
    return ""


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
        table.add_column("bounds")
        for p in m["params"]:
            table.add_row(p["name"], repr(p["default"]), str(p["type"]),
                          _bounds_text(p.get("bounds") or {}))
        console.print(table)
        console.print()


@app.command()
def validate(
    input_: Annotated[Path, typer.Argument(metavar="INPUT")],
    fmt: FormatOpt = None,
    shape: ShapeOpt = None,
    column_map: ColumnMapOpt = None,
    id_field: IdFieldOpt = None,
    pairing: PairingOpt = "best_vs_worst",
    on_invalid: OnInvalidOpt = "skip",
) -> None:
    """Read INPUT and print its ingest report (shape, rows, skipped rows) as JSON."""
    try:
        data = _open(input_, fmt, shape, column_map, id_field, on_invalid, pairing)
        for _ in data:
            pass
    except EngineError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps(data.report.to_dict(), indent=2))


def _train_and_heldout(pool_file: Path, eval_file: Path | None, enc: Any, progress: Any,
                       on_invalid: str, eval_fraction: float) -> tuple[Any, Any, dict]:
    """Embed the pool (and the named evaluation file) and split off the held-out pairs."""

    def pairs(path: Path) -> Any:
        return evaluation.load_pairs(PreferenceFile(path, on_invalid=on_invalid),  # type: ignore[arg-type]
                                     enc, progress=progress)

    return evaluation.holdout(pairs(pool_file), pairs(eval_file) if eval_file else None,
                              eval_fraction=eval_fraction)


@app.command()
def evaluate(
    input_: Annotated[Path, typer.Argument(metavar="POOL", help="preference data to select from")],
    out: Annotated[Path, typer.Option(help="JSON report")],
    method: Annotated[str, typer.Option()] = "isa",
    budget: Annotated[str, typer.Option()] = "0.05",
    param: ParamOpt = [],  # noqa: B006
    eval_file: EvalFileOpt = None,
    eval_fraction: EvalFractionOpt = 0.2,
    seeds: Annotated[int, typer.Option(help="seeds for random methods")] = 1,
    encoder: EncoderOpt = "sentence",
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    backend: BackendOpt = "torch",
    on_invalid: OnInvalidOpt = "skip",
    quiet: QuietOpt = False,
) -> None:
    """Proxy alignment score of a method's subset vs. the full pool: a Bradley–Terry probe
    trained on each, its pairwise accuracy on held-out pairs (with a 95% interval)."""
    try:
        enc = _encoder_factory(encoder, model, device, precision, None, backend)()
        with StageBar(not quiet, console=err) as progress:
            train, test, split = _train_and_heldout(input_, eval_file, enc, progress,
                                                    on_invalid, eval_fraction)
            report = evaluation.evaluate_subset(train, test, method, _parse_params(param),
                                                Budget.parse(budget), seeds=range(seeds))
    except EngineError as exc:
        _fail(exc)
        return
    report |= {"pool_pairs": len(train.table), "eval_pairs": len(test.table), "split": split,
               "encoder": enc.name}
    out.write_text(json.dumps(report, indent=2))
    sub, full = report["subset"], report["full"]
    err.print(f"{method} {budget}: accuracy {sub['accuracy']:.3f} vs full data "
              f"{full['accuracy']:.3f} on {full['n_eval']:,} held-out pairs → {out}")
    _print_length(report, sub.get("balanced_accuracy"), full.get("balanced_accuracy"))


def _print_length(report: dict[str, Any], subset_balanced: float | None,
                  full_balanced: float | None) -> None:
    """The length baseline beside every accuracy the CLI prints."""
    length = report["length"]
    line = f"length rule (longer answer wins): {length['length_rule_accuracy']:.3f}"
    if full_balanced is not None:
        line += (f"; length-balanced accuracy {subset_balanced:.3f} vs full data "
                 f"{full_balanced:.3f}" if subset_balanced is not None else
                 f"; length-balanced accuracy of the full data {full_balanced:.3f}")
    err.print(line)
    if length["warning"]:
        err.print(f"[yellow]warning[/] {escape(length['warning'])}")


@app.command()
def curve(
    input_: Annotated[Path, typer.Argument(metavar="POOL")],
    out: Annotated[Path, typer.Option(help="JSON report")],
    plot: Annotated[Path | None, typer.Option(help="PNG plot")] = None,
    method: Annotated[list[str], typer.Option("--method", "-m", help="repeat for several; "
                                              "NAME or NAME:key=value,key=value")]
    = ["isa", "random"],  # noqa: B006
    budgets: Annotated[str, typer.Option(help="percent grid")] = "1,2,3.5,5,10,25,50,100",
    seeds: Annotated[int, typer.Option(help="seeds for random methods")] = 5,
    share: Annotated[float, typer.Option(help="recommend the budget reaching this share of "
                                         "the plateau's gain")] = 0.95,
    metric: Annotated[str, typer.Option(help="fit the plateau on: auto (length-balanced "
                                        "when the evaluation pairs are length-dominated) | "
                                        "accuracy | balanced_accuracy")] = "auto",
    eval_file: EvalFileOpt = None,
    eval_fraction: EvalFractionOpt = 0.2,
    encoder: EncoderOpt = "sentence",
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    backend: BackendOpt = "torch",
    on_invalid: OnInvalidOpt = "skip",
    quiet: QuietOpt = False,
) -> None:
    """Budget curve: probe accuracy of each method over a grid of budgets, the paper's
    plateau R(x) = r − (r − a)·exp(−b·x) fitted, and the recommended budget."""
    try:
        grid = [float(x) for x in budgets.split(",")]
    except ValueError as exc:
        raise typer.BadParameter("comma-separated percents", param_hint="--budgets") from exc
    methods = [parse_method_spec(m) for m in method]
    if metric not in ("auto", *evaluation.METRICS):
        raise typer.BadParameter(f"expected auto or one of {', '.join(evaluation.METRICS)}",
                                 param_hint="--metric")
    try:
        enc = _encoder_factory(encoder, model, device, precision, None, backend)()
        with StageBar(not quiet, console=err) as progress:
            train, test, split = _train_and_heldout(input_, eval_file, enc, progress,
                                                    on_invalid, eval_fraction)
            report = evaluation.budget_curve(train, test, methods, grid=grid, seeds=seeds,
                                             share=share, metric=metric, progress=progress)
    except EngineError as exc:
        _fail(exc)
        return
    report |= {"split": split, "encoder": enc.name}
    out.write_text(json.dumps(report, indent=2))
    if plot is not None:
        from .evaluate.report import plot_curve

        plot_curve(report, plot)
    metric = report["metric"]
    err.print(f"{metric} ({report['metric_reason']}):")
    for m in report["methods"]:
        err.print(f"{m['method']:>10}: " + "  ".join(
            f"{g:g}%={a:.3f}" for g, a in zip(grid, m[metric], strict=True))
            + f"  → recommended {m.get('recommended_budget_percent')}%")
    _print_length(report, None, report["full"].get("balanced_accuracy"))


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``isa`` or ``isa:covariance_type=full,pca_components=64``."""
    name, _, rest = spec.partition(":")
    return name, _parse_params([p for p in rest.split(",") if p]) if rest else {}


def main() -> None:  # pragma: no cover
    sys.exit(app())
