"""``isa remote`` — the same work as the local commands, done by an ISA service.

    export ISA_SERVER_URL=http://localhost:8000 ISA_API_KEY=dev-key
    isa remote upload data.jsonl.gz                       # prints the data set id
    isa remote select ds_… --budget 5% --out subset.jsonl --format trl --scores s.parquet
    isa remote evaluate ds_… --method isa --budget 5% --report report.json
    isa remote status job_…  |  isa remote events job_… --follow
    isa remote jobs --type select  |  isa remote datasets --metadata team:vision
    isa remote download job_… out.png --format png
    isa remote webhook --url https://hooks.example/isa --events job.started,dataset.ready

Options keep the local commands' names (``--method``, ``--budget``, ``--param``,
``--format``, ``--level``, ``--template``, ``--seed``, ``--encoder``, ``--model``); the
key is read from ``$ISA_API_KEY`` (or ``--api-key``), the server from ``$ISA_SERVER_URL``
(or ``--server``). Exit codes: 0 done, 2 refused (the error's code is printed), 3 the
job failed or was cancelled.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run the work on an ISA service (uploads, jobs, downloads).")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_state: dict[str, Any] = {}

ParamOpt = Annotated[list[str], typer.Option("--param", "-p", help="method parameter key=value")]
QuietOpt = Annotated[bool, typer.Option(help="no progress bar")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="print the job id and return")]


@app.callback()
def _options(
    server: Annotated[str | None, typer.Option(envvar="ISA_SERVER_URL",
                                               help="service URL")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="ISA_API_KEY", help="API key",
                                                show_default=False)] = None,
    timeout: Annotated[float, typer.Option(help="seconds per HTTP request")] = 60.0,
) -> None:
    _state.update(server=server, api_key=api_key, timeout=timeout)


def _client() -> Any:
    from isa.remote.client import Client

    return Client(_state.get("server"), api_key=_state.get("api_key"),
                  timeout=_state.get("timeout", 60.0))


def _run(call: Any) -> Any:
    """Call, turning the service's refusals into a one-line error and exit code 2 (3 for
    a job that failed)."""
    from isa.remote import errors

    try:
        return call()
    except errors.JobFailedError as exc:
        err.print(f"[bold red]job {exc.job.status}[/] {escape(f'[{exc.code}] {exc.message}')}")
        raise typer.Exit(3) from None
    except errors.ServiceError as exc:
        err.print(f"[bold red]error[/] {escape(f'[{exc.code}] {exc.message}')}")
        for item in exc.details.get("errors", [])[:5]:
            err.print(f"  {escape(item.get('field', ''))}: {escape(item.get('message', ''))}")
        raise typer.Exit(2) from None


def _params(items: list[str]) -> dict[str, Any]:
    from isa.params import parse_params

    return parse_params(items)


def _encoder(encoder: str | None, model: str | None, max_seq_length: int | None,
             backend: str | None = None) -> dict[str, Any] | None:
    spec = {k: v for k, v in {"name": encoder, "model": model, "max_seq_length": max_seq_length,
                              "backend": backend}.items() if v is not None}
    return spec or None


def _finish(client: Any, job: Any, no_wait: bool, quiet: bool) -> Any:
    if no_wait:
        out.print(job.id)
        raise typer.Exit(0)
    return _run(lambda: client.wait(job.id, progress=not quiet))


@app.command()
def upload(
    input_: Annotated[Path, typer.Argument(metavar="INPUT", exists=True, dir_okay=False,
                                           help="preference data file")],
    fmt: Annotated[str | None, typer.Option("--input-format", help="input container")]
    = None,
    shape: Annotated[str | None, typer.Option(help="input shape (default: detect)")] = None,
    column_map: Annotated[str | None, typer.Option(
        help='JSON {"your_column": "our_field"}, e.g. {"question": "prompt"}')] = None,
    id_field: Annotated[str | None, typer.Option(help="column to use as row_id")] = None,
    pairing: Annotated[str | None, typer.Option(
        help="rows of N rated answers (shape ranked): best_vs_worst | best_vs_each")] = None,
    on_invalid: Annotated[str, typer.Option(help="fail | skip")] = "fail",
    quiet: QuietOpt = False,
) -> None:
    """Upload INPUT, wait for its validation, print the data set id."""
    with _client() as c:
        ds = _run(lambda: c.upload(input_, format=fmt, shape=shape,
                                   column_map=json.loads(column_map) if column_map else None,
                                   id_field=id_field, on_invalid=on_invalid, pairing=pairing,
                                   progress=not quiet))
    err.print(f"[green]ready[/] {ds.rows_valid:,} rows ({ds.shape}, {ds.format})"
              + (f", {ds.rows_skipped:,} skipped" if ds.rows_skipped else ""))
    out.print(ds.id)


@app.command()
def select(
    dataset_id: Annotated[str, typer.Argument(help="data set id (see `isa remote upload`)")],
    method: Annotated[str, typer.Option(help="selection method")] = "isa",
    budget: Annotated[str, typer.Option(help="fraction (0.05), percent (5%) or count (500)")]
    = "0.05",
    param: ParamOpt = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="random_state of the method")] = 0,
    level: Annotated[str, typer.Option(help="auto | pair | item")] = "auto",
    template: Annotated[str, typer.Option(help="embedded text")] = "prompt_completion",
    encoder: Annotated[str | None, typer.Option(help="sentence | causal-lm")] = None,
    model: Annotated[str | None, typer.Option(help="encoder model name")] = None,
    max_seq_length: Annotated[int | None, typer.Option(help="encoder max tokens")] = None,
    backend: Annotated[str | None, typer.Option(
        help="sentence encoder runtime on the workers: torch | openvino")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="write the subset here")]
    = None,
    export: Annotated[str | None, typer.Option(
        "--format", "--export", help="jsonl | parquet | trl | kto | openai")] = None,
    scores: Annotated[Path | None, typer.Option(help="write per-row scores here")] = None,
    no_wait: NoWaitOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Select a subset of a data set on the service; download it with ``--out``."""
    with _client() as c:
        job = _run(lambda: c.select(dataset_id, method=method, budget=budget,
                                    params=_params(param), seed=seed, level=level,
                                    template=template,
                                    encoder=_encoder(encoder, model, max_seq_length,
                                                     backend)))
        job = _finish(c, job, no_wait, quiet)
        res = job.result
        err.print(f"[green]selected[/] {res['rows_selected']:,} of {res['units']:,} "
                  f"with {method} (job {job.id})")
        if out_path is not None:
            _run(lambda: c.download(job.id, out_path, format=export, progress=not quiet))
            err.print(f"→ {out_path}")
        if scores is not None:
            _run(lambda: c.download(job.id, scores, format="scores"))
            err.print(f"→ {scores}")
    out.print(job.id)


@app.command()
def evaluate(
    dataset_id: Annotated[str, typer.Argument(help="pool data set id")],
    method: Annotated[str, typer.Option(help="selection method")] = "isa",
    budget: Annotated[str, typer.Option(help="fraction, percent or count")] = "0.05",
    param: ParamOpt = [],  # noqa: B006
    eval_dataset: Annotated[str | None, typer.Option(
        "--eval", help="held-out data set id (default: split the pool by prompt)")] = None,
    seeds: Annotated[int | None, typer.Option(help="seeds of stochastic methods")] = None,
    report: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    no_wait: NoWaitOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The proxy probe on a method's subset vs. the whole pool, run by the service."""
    with _client() as c:
        job = _run(lambda: c.evaluate(dataset_id, method=method, budget=budget,
                                      params=_params(param), eval_dataset_id=eval_dataset,
                                      seeds=seeds))
        job = _finish(c, job, no_wait, quiet)
        if report is not None:
            _run(lambda: c.download(job.id, report, format="json"))
    out.print_json(data=job.result)


@app.command()
def curve(
    dataset_id: Annotated[str, typer.Argument(help="pool data set id")],
    methods: Annotated[str, typer.Option(help="comma-separated method names")] = "isa,random",
    metric: Annotated[str, typer.Option(help="auto | accuracy | balanced_accuracy")] = "auto",
    eval_dataset: Annotated[str | None, typer.Option("--eval", help="held-out data set id")]
    = None,
    plot: Annotated[Path | None, typer.Option(help="write the PNG plot here")] = None,
    no_wait: NoWaitOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Accuracy over a budget grid for several methods, with the plateau fit."""
    specs = [{"method": m.strip()} for m in methods.split(",") if m.strip()]
    with _client() as c:
        job = _run(lambda: c.curve(dataset_id, methods=specs, metric=metric,
                                   eval_dataset_id=eval_dataset))
        job = _finish(c, job, no_wait, quiet)
        if plot is not None:
            _run(lambda: c.download(job.id, plot, format="png"))
    out.print_json(data=job.result)


@app.command()
def status(job_id: Annotated[str, typer.Argument(help="job id")]) -> None:
    """A job's record as JSON."""
    with _client() as c:
        job = _run(lambda: c.job(job_id))
    out.print_json(job.model_dump_json())


@app.command()
def wait(job_id: Annotated[str, typer.Argument(help="job id")],
         timeout: Annotated[float | None, typer.Option(help="give up after seconds")] = None,
         quiet: QuietOpt = False) -> None:
    """Wait for a job to end, with a progress bar; exit 3 if it failed."""
    with _client() as c:
        job = _run(lambda: c.wait(job_id, timeout=timeout, progress=not quiet))
    out.print(job.status)


@app.command()
def download(
    job_id: Annotated[str, typer.Argument(help="job id")],
    path: Annotated[Path, typer.Argument(help="where to write it")],
    export: Annotated[str | None, typer.Option(
        "--format", help="jsonl | parquet | trl | kto | openai | json | png | archive | "
        "scores")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Download a finished job's result."""
    with _client() as c:
        _run(lambda: c.download(job_id, path, format=export, progress=not quiet))
    err.print(f"→ {path}")


@app.command()
def cancel(job_id: Annotated[str, typer.Argument(help="job id")]) -> None:
    """Cancel a job (queued: at once; running: at its next batch)."""
    with _client() as c:
        job = _run(lambda: c.cancel(job_id))
    out.print(job.status)


MetadataOpt = Annotated[str | None, typer.Option(
    "--metadata", help="key:value — only those carrying this metadata pair")]


def _pair(metadata: str | None) -> tuple[str, str] | None:
    if metadata is None:
        return None
    key, sep, value = metadata.partition(":")
    if not sep:
        raise typer.BadParameter("key:value", param_hint="--metadata")
    return key, value


@app.command()
def jobs(status_: Annotated[str | None, typer.Option("--status", help="filter")] = None,
         type_: Annotated[str | None, typer.Option("--type", help="select, evaluate, "
                                                   "curve or align")] = None,
         metadata: MetadataOpt = None,
         limit: Annotated[int, typer.Option(help="at most this many")] = 20) -> None:
    """The tenant's jobs, newest first."""
    with _client() as c:
        rows = _run(lambda: list(itertools.islice(
            c.jobs(status=status_, type=type_, metadata=_pair(metadata),
                   page_size=min(limit, 100)), limit)))
    for job in rows:
        out.print(f"{job.id}  {job.type:<8} {job.status:<10} {job.stage or ''}")


@app.command()
def datasets(status_: Annotated[str | None, typer.Option("--status", help="filter")] = None,
             filename: Annotated[str | None, typer.Option(
                 "--filename", help="part of the file name (any case)")] = None,
             metadata: MetadataOpt = None,
             limit: Annotated[int, typer.Option(help="at most this many")] = 20) -> None:
    """The tenant's data sets, newest first: id, status, rows, file name."""
    with _client() as c:
        rows = _run(lambda: list(itertools.islice(
            c.datasets(status=status_, filename=filename, metadata=_pair(metadata),
                       page_size=min(limit, 100)), limit)))
    for ds in rows:
        out.print(f"{ds.id}  {ds.status:<10} {ds.rows_valid or 0:>9,}  {escape(ds.filename)}",
                  highlight=False)


@app.command()
def events(job_id: Annotated[str, typer.Argument(help="job id")],
           follow: Annotated[bool, typer.Option("--follow", "-f", help="go on printing "
                                                "until the job ends")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="one JSON object a "
                                                 "line")] = False) -> None:
    """A job's events, oldest first: status changes, stages, progress tenths, re-sends."""
    import datetime as dt

    with _client() as c:
        def show() -> None:
            for event in c.iter_job_events(job_id, follow=follow):
                if as_json:
                    out.print(event.model_dump_json(), highlight=False)
                    continue
                at = dt.datetime.fromtimestamp(event.created_at).strftime("%H:%M:%S")
                style = {"warning": "yellow", "error": "bold red"}.get(event.level, "")
                text = f"{at}  {event.type:<8} {escape(event.message)}"
                out.print(f"[{style}]{text}[/]" if style else text, highlight=False)

        _run(show)


@app.command()
def webhook(
    url: Annotated[str | None, typer.Option(help="register this URL for the tenant")] = None,
    events: Annotated[str | None, typer.Option(
        help="comma-separated event types the URL receives: job.started, job.succeeded, "
        "job.failed, job.cancelled, dataset.ready, dataset.invalid ('' for none)")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="remove the URL")] = False,
) -> None:
    """The tenant's webhook as JSON (URL, events, signing secret); with --url, --events
    or --remove, changed first, what is not given staying as it is (a tenant that never
    chose receives the job end events)."""
    if remove and url is not None:
        raise typer.BadParameter("--remove takes no --url", param_hint="--remove")
    with _client() as c:
        hook = _run(c.webhook)
        if url is not None or events is not None or remove:
            chosen = hook.events if events is None else \
                [e.strip() for e in events.split(",") if e.strip()]
            hook = _run(lambda: c.set_webhook(None if remove else url or hook.url,
                                              events=chosen))
    out.print_json(hook.model_dump_json())
