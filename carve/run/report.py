"""The run report: one content list rendered twice, as a self-contained HTML page and as Markdown."""

from __future__ import annotations

import base64
import html
import os
import string
from pathlib import Path

from .blocks import Block, Para, Table
from .compress_step import speed_over
from .config import RunConfig
from .sections import SECTIONS
from carve.files import write_atomic

from .state import STEPS, RunState

TEMPLATE = Path(__file__).with_name("report.html")


def fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.2f}"
    return str(value)


def _td(value: object) -> str:
    numeric = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    return f'<td class="{"num" if numeric else "txt"}">{html.escape(fmt(value))}</td>'


def _html_block(block: Block) -> str:
    if isinstance(block, Para):
        cls = f' class="{block.kind}"' if block.kind else ""
        return f"<p{cls}>{html.escape(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
        body = "".join(
            ('<tr class="hl">' if i in block.highlight else "<tr>")
            + "".join(_td(v) for v in row) + "</tr>"
            for i, row in enumerate(block.rows))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    data = base64.b64encode(block.path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(block.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")


def _md_block(block: Block, root: Path) -> str:
    if isinstance(block, Para):
        return ("> **Not done:** " if block.kind == "missing" else "") + block.text
    if isinstance(block, Table):
        lines = ["| " + " | ".join(block.headers) + " |", "|" + "---|" * len(block.headers)]
        for i, row in enumerate(block.rows):
            cells = [fmt(v) for v in row]
            if i in block.highlight:
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
    return f"![{block.caption}]({Path(os.path.relpath(block.path, root)).as_posix()})\n\n*{block.caption}*"


def headline(state: RunState) -> list[Block]:
    """The story in a few sentences, from whichever steps finished, each with the command that redoes it."""
    lines = []
    redo = f"carve run --out {state.root} --steps"
    if state.is_done("zoo"):
        z = state.summary("zoo")
        lines.append(f"Latency budget {z['budget_ms']:.2f} ms ({z['budget_source']}, {z['runtime']}, "
                     f"{z['input_size']} px); strongest hand-designed model within it: {z['hand_designed']} "
                     f"({redo} zoo).")
    if state.is_done("train"):
        t = state.summary("train")
        f, h = t["models"]["found"], t["models"]["hand_designed"]
        lines.append(f"Found model vs {h['name']}, from the same footing ({t.get('footing', 'random initialisation')}) "
                     f"with the same recipe: held-out top-1 {f['top1']:.2f} % vs {h['top1']:.2f} %, latency "
                     f"{f['latency_ms']:.2f} vs {h['latency_ms']:.2f} ms ({t['speedup_found_vs_hand']:.2f}x its "
                     f"speed), {f['params_m']:.2f} M vs {h['params_m']:.2f} M parameters ({redo} train).")
    if state.is_done("finetune"):
        d = state.summary("finetune")
        m = d["models"]
        many = len(d.get("seeds") or ()) > 1

        def fig(role: str, key: str) -> str:
            return f"{100 * m[role][key]:.2f}" + (f" ± {100 * m[role][f'{key}_std']:.2f}" if many else "")
        lines.append(f"Detection ({d.get('head', 'ssdlite')}, {d.get('data', 'detection data')}"
                     + (f", mean ± sd of {len(d['seeds'])} seeds" if many else "") + f"): AP50 "
                     f"{fig('found', 'AP50')} % with the found backbone vs {fig('hand_designed', 'AP50')} % with "
                     f"{m['hand_designed']['name']} (AP {fig('found', 'AP')} vs {fig('hand_designed', 'AP')} %)"
                     + _prior_note(d.get("prior")) + f" ({redo} finetune).")
    if state.is_done("compress"):
        c = state.summary("compress")
        kept = [r for r in c["rows"] if r.get("kept", True)]
        first, last = kept[0], kept[-1]
        if not any(not r["step"].startswith("export") for r in kept[1:]):
            lines.append(f"Compressed {c['name']}: no step both paid in {c['runtime']} at {c['input_size']} px"
                         + (f" and kept top-1 within {c['max_drop']:g} point(s)" if c.get("max_drop") is not None
                            else "") + f"; what ships is the uncompressed model ({redo} compress).")
        elif compressed := speed_over(last, first):
            change = (f"top-1 {fmt(first['top1'])} -> {fmt(last['top1'])} %" if first["top1"] is not None
                      and last["top1"] is not None else "top-1 not measured")
            lines.append(f"Compressed {c['name']}: {compressed:.2f}x the speed of the "
                         f"uncompressed model in {c['runtime']} at {c['input_size']} px, {first['size_mb']:.2f} -> "
                         f"{last['size_mb']:.2f} MB, {change} ({redo} compress).")
        before = c["rows"][0]
        for row in c["rows"][1:]:
            if row.get("kept", True):
                before = row
                continue
            step = row["step"].removesuffix(" (not kept)")
            if row.get("dropped") == "accuracy" and first["top1"] is not None and row["top1"] is not None:
                lines.append(f"{step} lost {first['top1'] - row['top1']:.2f} top-1 points against the uncompressed "
                             f"model, more than compress.max_drop ({c['max_drop']:g}) allows, and was not kept.")
            elif row.get("gate_speedup"):  # the pair the speed gate timed together decided it: quote that
                lines.append(f"{step} was measured at {row['gate_speedup']:.2f}x the speed of the model before it "
                             f"(timed as a pair) and not kept (it did not pay here).")
            elif speed := speed_over(row, before):
                lines.append(f"{step} was measured at {speed:.2f}x the speed of "
                             f"the model before it and not kept (it did not pay here).")
    return [Para(" ".join(lines), "note")] if lines else []


def build_report(cfg: RunConfig, state: RunState) -> tuple[Path, Path]:
    """Write ``report/report.html`` (images embedded, no external files) and ``report/report.md``."""
    out = state.step_dir("report")
    chapters: list[tuple[str, list[Block]]] = []
    timings = []
    for step in STEPS:
        if step == "report":
            continue
        title, render = SECTIONS[step]
        if state.is_done(step):
            record = state.record(step)
            blocks = render(record["summary"], state, cfg, out)
            timings.append([step, "done", record["wall_s"], record["finished"]])
        else:
            reason = state.failure(step) or "not run in this folder yet"
            blocks = [Para(f"This step has not finished: {reason}", "missing")]
            timings.append([step, "not done", None, None])
        chapters.append((title, blocks))
    overview = headline(state) + [Para(f"Run folder {state.root}; the resolved configuration is {state.root / 'config.yaml'}. "
                     f"Running carve run --out {state.root} again with the same configuration skips the finished "
                     f"steps."),
                Table(["step", "status", "wall time (s)", "finished"], timings)]
    chapters.insert(0, ("Overview", overview))
    subtitle = f"{cfg.report.title}: zoo → search → train → finetune → compress, run '{cfg.name}'"
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n" + "\n".join(_html_block(b) for b in blocks)
                     for t, blocks in chapters)
    page = string.Template(TEMPLATE.read_text()).substitute(title=html.escape(cfg.report.title),
                                                            subtitle=html.escape(subtitle), body=body)
    md = [f"# {cfg.report.title}", "", subtitle, ""]
    for t, blocks in chapters:
        md += [f"## {t}", ""] + [_md_block(b, out) + "\n" for b in blocks]
    html_path = write_atomic(out / "report.html", page)
    md_path = write_atomic(out / "report.md", "\n".join(md))
    return html_path, md_path


def _prior_note(prior: dict | None) -> str:
    """The no-image prior beside the detection figures, when the step recorded it."""
    if not prior:
        return ""
    return (f"; a detector that sees no image (three centred boxes per image) scores AP50 {100 * prior['AP50']:.2f} % "
            f"(AP {100 * prior['AP']:.2f} %)")
