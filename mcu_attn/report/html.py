"""DIR/report.html for a build and for a sweep: one self-contained file (inline style, figures as data URIs),
readable offline. Everything in it comes from report.json / sweep.json; the figures need matplotlib (the
`[plots]` extra) and the page says so when it is missing."""

from __future__ import annotations

import base64
from html import escape

from mcu_attn.report.plots import PLOTS_NOTE, layers_png

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;font-size:0.9em}
th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.hi{background:#fff6d5}
.note{color:#666;font-size:0.9em}img{max-width:100%}"""


def _cell(value, digits: int = 0) -> str:
    if value is None:
        return "<td class=n>–</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, float)):
        return f"<td class=n>{value:,.{digits}f}</td>"
    return f"<td>{escape(str(value))}</td>"


def table(headers: list[str], rows: list[list], digits: dict[int, int] | None = None,
          highlight: set[int] = frozenset()) -> str:
    """An HTML table; `digits` gives the decimals of numeric columns by index, `highlight` marks rows."""
    digits = digits or {}
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr{' class=hi' if index in highlight else ''}>"
        + "".join(_cell(value, digits.get(column, 0)) for column, value in enumerate(row)) + "</tr>"
        for index, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def figure(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p class=note>{escape(PLOTS_NOTE)}</p>"
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page(title: str, sections: list[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{escape(title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>{escape(title)}</h1>" + "".join(sections) + "</body></html>\n")


# ---- a build --------------------------------------------------------------------------------------------------

def _profiled_layers(report: dict) -> list[dict]:
    """report.json layers (memory plan) joined with the emulated profile's rows by symbol."""
    profile = {row["symbol"]: row for row in (report.get("emulated") or {}).get("layers", [])}
    joined = []
    for layer in report["layers"]:
        if layer.get("kind") == "view":
            continue
        row = profile.get(layer.get("symbol"), {})
        joined.append({**layer, "instructions": row.get("instructions"), "cycles": row.get("cycles"),
                       "energy_uj": row.get("energy_uj")})
    return joined


def agreement(emulated: dict) -> str:
    """How the firmware's output compares with the reference: bit for bit, or for a float build (whose C kernels
    round differently from numpy) within the simulator's tolerance."""
    if emulated["bit_exact"]:
        return "bit-exact"
    if "within_tolerance" in emulated:
        verdict = "within tolerance" if emulated["within_tolerance"] else "outside the tolerance"
        return f"{verdict} (float build), max |error| {emulated['max_abs_error']:.3g}"
    return "differs"


def build_sections(report: dict) -> list[str]:
    """The layer table, memory map, energy by kernel and figures of one build's report.json."""
    emulated = report.get("emulated") or {}
    layers = _profiled_layers(report)
    sections = []
    if emulated.get("instructions") is not None:
        sections.append(
            "<h2>One inference in the emulator</h2>" + table(
                ["sample", "output against the reference", "instructions", "cycles (estimate)",
                 "time, ms (estimate)", "energy, µJ (estimate)"],
                [[emulated["sample"], agreement(emulated), emulated["instructions"], emulated["cycles"],
                  emulated["time_ms"], emulated["energy_uj"]]], {4: 3, 5: 2})
            + f"<p class=note>{escape(emulated['note'])}</p>")
    elif emulated.get("error"):
        sections.append(f"<h2>Emulator</h2><p>not profiled: {escape(emulated['error'])}</p>")
    sections.append("<h2>Layers</h2>" + table(
        ["layer", "op", "MACs", "RAM live, B", "instructions", "cycles (est.)", "energy, µJ (est.)"],
        [[layer["name"], layer["op"], layer["macs"], layer["live_bytes"], layer["instructions"], layer["cycles"],
          layer["energy_uj"]] for layer in layers], {6: 3}))
    if emulated.get("layers"):
        by_op: dict[str, list[float]] = {}
        for layer in emulated["layers"]:
            totals = by_op.setdefault(layer["op"] or "harness", [0.0, 0.0, 0.0])
            totals[0] += layer["energy_uj"] or 0.0
            totals[1] += layer["instructions"]
            totals[2] += layer["share"]
        rows = sorted(([op, i, e, s * 100] for op, (e, i, s) in by_op.items()), key=lambda r: -r[2])
        sections.append("<h2>Energy by kernel</h2>" + table(["op (kernel)", "instructions", "energy, µJ (est.)",
                                                             "share of cycles, %"], rows, {2: 2, 3: 1}))
    pruning = report.get("pruning")
    if pruning:
        before, after = pruning["before"], pruning["after"]
        sections.append("<h2>Pruning</h2>" + table(
            ["", "params", "MACs", "planned flash, B"],
            [["before", before["params"], before["macs"], before.get("flash_bytes")],
             ["after", after["params"], after["macs"], after.get("flash_bytes")]])
            + table(["block", "heads kept"], [[b["block"], f"{b['heads_after']} of {b['heads_before']}"]
                                              for b in pruning["heads"]])
            + table(["FFN", "channels kept"], [[c["ffn"], f"{c['channels_after']} of {c['channels_before']}"]
                                               for c in pruning["channels"]])
            + table(["refit layer", "error before", "error after", "ridge"],
                    [[r["layer"], r["error_before"], r["error_after"], r["ridge"]] for r in pruning["reconstruction"]],
                    {1: 4, 2: 4, 3: 3}))
    memory = [["arena (activations)", report.get("arena_bytes")], ["stack bound", (report.get("stack") or {})
                                                                   .get("bytes")],
              ["weights and operator parameters (planned)", (report.get("planned") or {}).get("flash_bytes")]]
    sections.append("<h2>Memory</h2>" + table(["what", "bytes"], memory))
    if report.get("sections"):
        sections.append("<h3>Sections of the linked firmware</h3>" + table(
            ["section", "address", "bytes"],
            [[s.get("name"), f"0x{s.get('address', 0):08X}", s.get("size")] for s in report["sections"]]))
    sections.append("<h2>Figures</h2>" + figure(layers_png(layers), "RAM and energy per layer"))
    return sections


def build_html(report: dict) -> str:
    accuracy = ("<h2>Accuracy</h2><p>not measured by build (it has no labels): <code>mcu-attn simulate DIR "
                "--data X.npy --labels y.npy</code> measures the firmware's, <code>mcu-attn eval</code> the "
                "reference's.</p>")
    head = table(["target", "core", "bits", "params", "MACs", "flash, B", "RAM, B"],
                 [[report["target"], report.get("core", "host"), report["bits"], report["params"], report["macs"],
                   report["flash_bytes"], report["ram_bytes"]]])
    return page(f"mcu-attn build: {report.get('model', '')} for {report['target']}",
                [head, accuracy] + build_sections(report))


# ---- a sweep --------------------------------------------------------------------------------------------------

def sweep_html(payload: dict, pareto: bytes | None, selected: dict | None = None) -> str:
    """The points table (front highlighted), the Pareto plot, the recommendation and, for the selected point
    (the recommended one, else the cheapest on the front), its build's layer table and memory."""
    from mcu_attn.sweep import shown

    points = payload["points"]
    rows, front = [], set()
    for index, p in enumerate(points):
        c = p["config"]
        if p.get("pareto"):
            front.add(index)
        rows.append([shown(p), c["bits"], p.get("attention_chosen") or c["attention"], c["prune_heads"], c["prune_ffn"], p.get("accuracy"),
                     p.get("energy_uj"), p.get("cycles"), p.get("instructions"), p.get("flash_bytes"),
                     p.get("ram_bytes"), p.get("pareto"), p.get("error", "")])
    sections = [f"<p>target {escape(payload['target'])}; {len(points)} points ({payload['computed']} computed, "
                f"{payload['cached']} from the cache); accuracy is the reference's on --data, energy and cycles are "
                f"estimates of one emulated inference; with token pruning or early exit the mean per inference over "
                f"--data by exit class, with streaming the mean per step (the technique and what it chose in "
                f"[brackets]).</p>",
                "<h2>Accuracy against energy</h2>" + figure(pareto, "Pareto front")]
    recommended = payload.get("recommended")
    if recommended:
        sections.append(f"<h2>Recommended</h2><p>{escape(recommended['reason'])}: "
                        f"<code>{escape(recommended['command'])}</code></p>")
    elif payload.get("recommendation_note"):
        sections.append(f"<h2>Recommended</h2><p>{escape(payload['recommendation_note'])}</p>")
    sections.append("<h2>Points</h2>" + table(
        ["point", "bits", "attention", "prune heads", "prune FFN", "accuracy", "energy, µJ (est.)", "cycles (est.)",
         "instructions", "flash, B", "RAM, B", "Pareto", "error"], rows, {3: 2, 4: 2, 5: 4, 6: 2}, front))
    if selected is not None:
        sections.append(f"<h2>Selected point: {escape(selected.get('describe', ''))}</h2>")
        sections += build_sections(selected["report"])
    return page(f"mcu-attn sweep: {payload['model']}", sections)
