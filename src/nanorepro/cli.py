"""The ``nanorepro`` command: list | run | reproduce | report.

Bad input (an unknown experiment, profile or config key, a value that does not parse,
a malformed results file) prints one ``nanorepro: error: ...`` line and exits with 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from nanorepro.common.errors import UserError
from nanorepro.common.progress import ProgressBoard

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Compact, tested reproductions of ten recent ML systems.",
)

RESULTS = typer.Option(Path("results"), "--results", help="Results store (results/NAME/PROFILE/seedS.json).")
REPORTS = typer.Option(Path("reports"), "--reports", help="Where index.html, summary.md and plots/ are written.")


@app.command("list")
def list_experiments() -> None:
    """List the ten systems and the experiments that check their claims."""
    from nanorepro.experiments import SYSTEMS, registry

    experiments = registry()
    for system in SYSTEMS:
        mine = [e for e in experiments.values() if e.system == system.key]
        status = ", ".join(e.name for e in mine) if mine else "not implemented"
        typer.echo(f"{system.name:<18} {status}")
        typer.echo(f"    paper: {system.paper}")
        typer.echo(f"    claim: {system.claim}")
        for exp in mine:
            seeds = ", ".join(f"{p}={prof.seeds}" for p, prof in exp.profiles.items())
            typer.echo(f"    {exp.name}: {exp.summary} (seeds: {seeds})")
            for check in exp.checks:
                typer.echo(f"      {check.key}: {check.statement} [{check.threshold_text()}]")


@app.command()
def run(
    name: str = typer.Argument(..., help="Experiment name (see `nanorepro list`)."),
    profile: str = typer.Option("quick", "--profile", help="smoke | quick | full"),
    seed: int = typer.Option(0, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="Config override key=value (repeatable)."),
    results: Path = RESULTS,
    threads: int | None = typer.Option(None, "--threads", help="torch threads (default: the experiment's)."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda (default: the experiment's)."),
) -> None:
    """Run one experiment for one seed and store its result."""
    from nanorepro.experiments import get_experiment
    from nanorepro.runner import check_profile, run_one

    exp = get_experiment(name)
    check_profile(profile)
    if device not in (None, "auto", "cpu", "cuda"):
        raise UserError(f"unknown device '{device}' (choose from auto, cpu, cuda)")
    with ProgressBoard() as board:
        outcome = run_one(exp, profile, seed, results_root=results, board=board, overrides=overrides or [],
                          threads=threads, device=device)
    result = outcome.result
    typer.echo(f"{exp.name} ({result['profile']}, seed {seed}) finished in {result['wall_time_s']:.1f}s "
               f"-> {outcome.path}")
    for check in result["claim_checks"]:
        verdict = {True: "pass", False: "MISS", None: "reported"}[check["passed"]]
        value = "n/a" if check["value"] is None else f"{check['value']:.4g}"
        typer.echo(f"  {check['key']:<4} {verdict:<8} {value:>10}  {check['statement']}")


@app.command()
def reproduce(
    profile: str = typer.Option("quick", "--profile", help="smoke | quick | full"),
    only: list[str] | None = typer.Option(None, "--only", help="Experiment name (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Rerun seeds that already have a result."),
    results: Path = RESULTS,
    reports: Path = REPORTS,
) -> None:
    """Run every experiment's seeds for a profile (resumable), then render the report."""
    from nanorepro.report.render import render_report
    from nanorepro.runner import reproduce as reproduce_all

    with ProgressBoard() as board:
        failures = reproduce_all(profile, only=only, force=force, results_root=results, board=board)
    html_path, md_path = render_report(results, reports, profile)
    typer.echo(f"report: {html_path} and {md_path}")
    if failures:
        for line in failures:
            typer.echo(f"failed: {line}", err=True)
        raise typer.Exit(1)


@app.command()
def report(
    profile: str = typer.Option("full", "--profile", help="smoke | quick | full"),
    results: Path = RESULTS,
    reports: Path = REPORTS,
) -> None:
    """Re-render the report from stored results (no experiment is run)."""
    from nanorepro.report.render import render_report
    from nanorepro.runner import check_profile

    html_path, md_path = render_report(results, reports, check_profile(profile))
    typer.echo(f"report: {html_path} and {md_path}")


def _fail(message: str, code: int) -> None:
    # Plain print, not rich: a terminal-width wrap would split the one error line.
    print(f"nanorepro: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="nanorepro", standalone_mode=False)
    except UserError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.Abort:
        _fail("interrupted", 130)
    except Exception as exc:
        # Click's usage errors (typer vendors click, so match its interface, not its class).
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            _fail(exc.format_message(), 2)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
