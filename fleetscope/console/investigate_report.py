"""Text rendering of an investigation for ``fleetscope investigate --format text``.

The answer comes first (layer, node, GPU, confidence, action), then the evidence with file:line, then
other candidate causes, the symptoms they explain and the timeline.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

#: Timeline rows shown in text form; the JSON form carries the whole timeline.
TEXT_TIMELINE_ROWS = 40


def render_text(report: dict[str, Any], console: Console) -> None:
    """Print an investigation (the dictionary of ``Investigation.to_dict()``) for a person.

    Args:
        report: The investigation as a dictionary.
        console: Where to print.
    """
    causes = report["root_causes"]
    if not report["incident"]:
        healthy = report.get("verdict", "healthy") == "healthy"
        console.print(
            verdict_sentence(report), style="bold green" if healthy else "bold yellow", highlight=False
        )
    else:
        top = causes[0]
        gpu = _gpu(top)
        console.print(
            f"[bold red]Root cause[/] ({top['layer'] or 'layer not determined'}) "
            f"node [bold]{top['node'] or '?'}[/]  GPU [bold]{gpu}[/]  confidence {top['confidence']:.2f}"
            + _certainty(top)
        )
        console.print(f"  {top['summary']}", highlight=False)
        if top["action"]:
            console.print(f"  [bold]Action:[/] {top['action']}", highlight=False)
        console.print("\n[bold]Evidence[/]")
        for e in top["evidence"]:
            console.print(f"  [cyan]{e['source']}[/]  {e['text'][:300]}", highlight=False)
        if len(causes) > 1:
            console.print("\n[bold]Other candidate causes[/]")
            for c in causes[1:6]:
                console.print(
                    f"  {c['confidence']:.2f}{_certainty(c)} {c['layer']} {c['node'] or '?'} GPU {_gpu(c)}: "
                    f"{c['summary'][:200]}",
                    highlight=False,
                )
        if report["symptoms"]:
            console.print("\n[bold]Symptoms[/]")
            for s in report["symptoms"][:10]:
                by = f" (explained by cause {s['explained_by'] + 1})" if s["explained_by"] is not None else ""
                console.print(f"  {s['summary'][:200]}{by}", highlight=False)
    timeline = report["timeline"]
    if timeline:
        # A list, not a table: five columns folded into 80 columns of a pipe made one entry 15 lines.
        console.print("\n[bold]Timeline[/]")
        for item in timeline[:TEXT_TIMELINE_ROWS]:
            head = "  ".join(
                part
                for part in (item["time"] or item["time_raw"] or "time unknown", item["node"], item["layer"])
                if part
            )
            console.print(f"  {head}  [cyan]{item['source']}[/]", highlight=False)
            console.print(f"      {item['text'][:300]}", highlight=False, no_wrap=True, overflow="ellipsis")
        if len(timeline) > TEXT_TIMELINE_ROWS:
            console.print(f"  ... {len(timeline) - TEXT_TIMELINE_ROWS} more in --format json")
    unparsed = report["unparsed"]
    console.print(
        f"\nRead without evidence (healthy chatter, or formats not understood): {unparsed['files']} file(s), "
        f"{unparsed['lines']} line(s)."
    )
    for note in report.get("notes", []):
        console.print(f"  note: {note}", highlight=False)


def _gpu(cause: dict[str, Any]) -> str:
    if cause["gpu"] is not None:
        return str(cause["gpu"]) + (f" ({cause['gpu_pci_bus_id']})" if cause["gpu_pci_bus_id"] else "")
    return cause["gpu_pci_bus_id"] or "?"


def verdict_sentence(report: dict[str, Any]) -> str:
    """The one-line answer for a report without an incident (the CLI and the console say the same).

    Reports stored before reports carried a ``verdict`` read as healthy, as they were written.
    """
    verdict = report.get("verdict", "healthy")
    if verdict == "not_judged":
        understood = report.get("understood") or {}
        return (
            "Could not judge: almost nothing in the bundle was understood "
            f"({understood.get('lines', 0)} of {understood.get('of_lines', 0)} lines gave evidence); "
            "this is not evidence of a healthy system."
        )
    if verdict == "nothing_readable":
        return "Nothing readable: the bundle holds no text files; nothing was judged."
    return "No incident: the evidence read shows a healthy system."


def _certainty(cause: dict[str, Any]) -> str:
    """`` (likely)``; empty for reports stored before root causes carried a certainty."""
    return f" ({cause['certainty']})" if cause.get("certainty") else ""
