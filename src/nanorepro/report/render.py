"""Render ``reports/index.html`` (self-contained, plots embedded) and ``reports/summary.md``.

One row per system: the paper's claim, our measurement (each claim check over all
stored seeds, with the per-seed spread and the seed count) and a verdict. A system
with no experiment yet is "not implemented"; an implemented one without results for
the profile is "not run". Neither is ever shown as passing.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nanorepro.common.config import config_hash
from nanorepro.common.experiment import Experiment, Table
from nanorepro.common.io import atomic_write_bytes, atomic_write_text
from nanorepro.experiments import SYSTEMS, System, registry
from nanorepro.report.store import load_runs


@dataclass
class ExperimentRow:
    experiment: Experiment
    runs: list[dict]
    checks: list[dict] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if not self.runs:
            return "not run"
        judged = [c for c in self.checks if c["passed"] is not None]
        passed = sum(c["passed"] for c in judged)
        if not judged:
            return "reported (no thresholds)"
        if passed == len(judged):
            return f"reproduced ({passed}/{len(judged)} checks)"
        if passed == 0:
            return f"not reproduced (0/{len(judged)} checks)"
        return f"partly reproduced ({passed}/{len(judged)} checks)"


@dataclass
class SystemRow:
    system: System
    experiments: list[ExperimentRow]

    @property
    def verdict(self) -> str:
        if not self.experiments:
            return "not implemented"
        return "; ".join(f"{row.experiment.name}: {row.verdict}" for row in self.experiments)


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) < 1e-9:
        return "0"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def measurement_text(check: dict) -> str:
    spread = f" ± {fmt(check['seed_std'])}" if check.get("seed_std") is not None else ""
    return f"{fmt(check['value'])}{spread} (n={check['n_seeds']})"


def threshold_text(check: dict) -> str:
    if check.get("applicable") is False:
        return "not applicable to these runs"
    if check["threshold"] is None:
        return "reported"
    if check["op"] == "in":
        return f"in [{fmt(check['threshold'][0])}, {fmt(check['threshold'][1])}]"
    return f"{check['op']} {fmt(check['threshold'])}"


def cell(text: str) -> str:
    """Markdown table cell: a literal '|' would end the cell."""
    return text.replace("|", "\\|")


def mark(passed: bool | None) -> str:
    return {True: "pass", False: "MISS", None: "—"}[passed]


def collect(results_root: Path, profile: str, plot_dir: Path) -> list[SystemRow]:
    experiments = registry()
    rows = []
    for system in SYSTEMS:
        exp_rows = []
        for exp in (e for e in experiments.values() if e.system == system.key):
            runs = load_runs(results_root, exp.name, profile)
            row = ExperimentRow(exp, runs)
            if runs:
                metrics = [r["metrics"] for r in runs]
                row.checks = [check.evaluate(metrics) for check in exp.checks]
                if exp.plot is not None:
                    row.plots = save_figures(exp.name, exp.plot(metrics), plot_dir)
                if exp.tables is not None:
                    row.tables = exp.tables(metrics)
                expected = exp.profiles[profile].seeds if profile in exp.profiles else None
                if expected is not None and len(runs) < expected:
                    row.notes.append(f"only {len(runs)} of the profile's {expected} seeds are stored")
                if profile in exp.profiles:
                    current = config_hash(exp.profiles[profile].config)
                    stale = [r["seed"] for r in runs if r["config_hash"] != current]
                    if stale:
                        row.notes.append(f"seeds {stale} were run with a config that differs from the current profile")
                if len({r["git_commit"] for r in runs}) > 1:
                    row.notes.append("seeds come from different commits")
            exp_rows.append(row)
        rows.append(SystemRow(system, exp_rows))
    return rows


def save_figures(prefix: str, figures: dict, plot_dir: Path) -> list[Path]:
    paths = []
    for name, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        paths.append(atomic_write_bytes(plot_dir / f"{prefix}-{name}.png", buffer.getvalue()))
    return paths


def run_facts(runs: list[dict]) -> str:
    walls = [r["wall_time_s"] for r in runs]
    devices = sorted({r["device"].get("gpu", r["device"]["device"]) for r in runs})
    commits = sorted({r["git_commit"][:12] for r in runs})
    return (f"{len(runs)} seeds; wall time {fmt(sum(walls))} s in all "
            f"({fmt(statistics.fmean(walls))} s per seed); device {', '.join(devices)}; "
            f"torch threads {runs[0]['device'].get('threads')}; nanorepro {runs[0]['version']}; "
            f"commit {', '.join(commits)}")


# --------------------------------------------------------------------------- Markdown


def render_markdown(rows: list[SystemRow], profile: str, generated: str) -> str:
    lines = [
        f"# nanorepro report — profile `{profile}`",
        "",
        f"Generated {generated}. Regenerate with `nanorepro report --profile {profile}`.",
        "",
        "| System | Paper's claim | Our measurement | Verdict | Plots |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        measured, plots = [], []
        for exp_row in row.experiments:
            judged = [c for c in exp_row.checks if c["passed"] is not None]
            measured += [f"{c['key']}: {measurement_text(c)} ({threshold_text(c)}, {mark(c['passed'])})"
                         for c in judged]
            plots += [f"[{p.stem}](plots/{p.name})" for p in exp_row.plots]
        measured_cell = cell("<br>".join(measured)) or "—"
        lines.append(f"| **{row.system.name}** | {cell(row.system.claim)} | {measured_cell} | {row.verdict} | "
                     f"{', '.join(plots) or '—'} |")
    for row in rows:
        for exp_row in row.experiments:
            lines += ["", f"## {row.system.name} — `{exp_row.experiment.name}`", "", exp_row.experiment.summary, ""]
            if not exp_row.runs:
                lines.append(f"No results for profile `{profile}`: run `nanorepro run {exp_row.experiment.name} "
                             f"--profile {profile}`.")
                continue
            lines += [f"Verdict: **{exp_row.verdict}**. {run_facts(exp_row.runs)}.", ""]
            lines += [f"> Note: {note}." for note in exp_row.notes] + ([""] if exp_row.notes else [])
            lines += ["| Check | Statement | Measured (± seed std) | Threshold | Result |", "|---|---|---|---|---|"]
            for c in exp_row.checks:
                lines.append(f"| {c['key']} | {cell(c['statement'])} | {measurement_text(c)} | {threshold_text(c)} | "
                             f"{mark(c['passed'])} |")
            for table in exp_row.tables:
                lines += ["", f"**{table.title}**", "", "| " + " | ".join(map(cell, table.columns)) + " |",
                          "|" + "---|" * len(table.columns)]
                lines += ["| " + " | ".join(map(cell, r)) + " |" for r in table.rows]
            lines += ["", *[f"![{p.stem}](plots/{p.name})" for p in exp_row.plots]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.4em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.pass { color: #1a7f37; font-weight: 600; } .MISS { color: #c62828; font-weight: 600; }
.muted { color: #777; } img { max-width: 100%; border: 1px solid #eee; }
.note { background: #fff8e1; padding: 0.3em 0.6em; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_html(rows: list[SystemRow], profile: str, generated: str) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>nanorepro report ({e(profile)})</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>nanorepro report — profile <code>{e(profile)}</code></h1>",
           f"<p class='muted'>Generated {e(generated)}.</p>",
           "<table><tr><th>System</th><th>Paper's claim</th><th>Our measurement</th><th>Verdict</th></tr>"]
    for row in rows:
        items = []
        for exp_row in row.experiments:
            for c in exp_row.checks:
                if c["passed"] is not None:
                    items.append(f"{e(c['key'])}: {e(measurement_text(c))} ({e(threshold_text(c))}) "
                                 f"<span class='{mark(c['passed'])}'>{mark(c['passed'])}</span>")
        link = f"<a href='#{e(row.system.key)}'>{e(row.system.name)}</a>" if row.experiments else e(row.system.name)
        verdict_class = "muted" if not row.experiments else ""
        out.append(f"<tr><td><b>{link}</b><br><span class='muted'>{e(row.system.paper)}</span></td>"
                   f"<td>{e(row.system.claim)}</td><td>{'<br>'.join(items) or '—'}</td>"
                   f"<td class='{verdict_class}'>{e(row.verdict)}</td></tr>")
    out.append("</table>")
    for row in rows:
        for exp_row in row.experiments:
            exp = exp_row.experiment
            out.append(f"<h2 id='{e(row.system.key)}'>{e(row.system.name)} — <code>{e(exp.name)}</code></h2>")
            out.append(f"<p>{e(exp.summary)}</p>")
            if not exp_row.runs:
                out.append(f"<p class='muted'>No results for profile {e(profile)}.</p>")
                continue
            out.append(f"<p>Verdict: <b>{e(exp_row.verdict)}</b>. {e(run_facts(exp_row.runs))}.</p>")
            out += [f"<p class='note'>Note: {e(note)}.</p>" for note in exp_row.notes]
            out.append("<table><tr><th>Check</th><th>Statement</th><th>Measured (± seed std)</th>"
                       "<th>Threshold</th><th>Result</th></tr>")
            for c in exp_row.checks:
                out.append(f"<tr><td>{e(c['key'])}</td><td>{e(c['statement'])}</td>"
                           f"<td>{e(measurement_text(c))}</td><td>{e(threshold_text(c))}</td>"
                           f"<td class='{mark(c['passed'])}'>{mark(c['passed'])}</td></tr>")
            out.append("</table>")
            for table in exp_row.tables:
                out.append(f"<p><b>{e(table.title)}</b></p><table><tr>"
                           + "".join(f"<th>{e(c)}</th>" for c in table.columns) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in table.rows]
                out.append("</table>")
            out += [_img(p) for p in exp_row.plots]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_report(results_root: str | Path, reports_dir: str | Path, profile: str) -> tuple[Path, Path]:
    """Write ``index.html`` and ``summary.md`` (and ``plots/*.png``) for one profile's stored results."""
    reports_dir = Path(reports_dir)
    rows = collect(Path(results_root), profile, reports_dir / "plots")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    html_path = atomic_write_text(reports_dir / "index.html", render_html(rows, profile, generated))
    md_path = atomic_write_text(reports_dir / "summary.md", render_markdown(rows, profile, generated))
    return html_path, md_path
