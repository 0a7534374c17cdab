"""Mean energy per inference when the work depends on the input (docs/dynamic.md, "Measuring").

An early-exit build runs a different amount of code for different inputs, so one profiled sample does not
give the energy of the test split. `simulate` measures it this way:
1. Every sample runs once without hooks (Unicorn at full speed, for the bit-exact check), and after each run the
   firmware's `ma_last_exit` is read from its RAM: the exit it took (0: the whole model). The numpy reference
   says which exit each sample must take (reference/dynamic.py); the two are compared sample by sample.
2. The samples are grouped by the exit they take (the class). The first `per_class` samples of each class are
   profiled in full (block hook and flash reads: instructions, the cycle model, energy); sample 0's profile
   is reused.
3. Mean over the samples = sum over classes of (share of the samples in the class) x (mean of the class's
   profiled samples). A class runs the same layer functions for every input; its instruction count varies only
   through the kernels' data-dependent branches (the attention's running-maximum rescale, saturation, a head's
   largest logit), which `spread` reports: the largest relative difference between a profiled sample's
   instructions and its class mean (`--profile-per-class N` profiles more samples to measure it).
A build without an early exit is one class, and its mean is the mean of its profiled samples.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.progress import progress

FULL = "whole model"


def replayed(options, report: dict):
    """The build options with each `auto` of --token-prune, --early-exit and --streaming replaced by what the
    build chose (report.json): the same graphs, without searching again."""
    from dataclasses import replace

    chosen = {"token_prune": (report.get("dynamic") or {}).get("token_prune"),
              "early_exit": (report.get("dynamic") or {}).get("early_exit"), "streaming": report.get("stream")}
    changes = {key: entry["chosen"] for key, entry in chosen.items()
               if getattr(options, key) == "auto" and entry is not None and entry.get("chosen") is not None}
    changes.update({key: None for key in ("token_prune", "early_exit") if getattr(options, key) == "auto"
                    and chosen[key] is not None and chosen[key].get("chosen") is None})
    return replace(options, **changes)


def exit_symbol(build) -> str | None:
    """The (prefixed) name of the firmware's exit variable, None for a build without an early exit."""
    return (build.report.get("dynamic") or {}).get("exit_symbol")


def reference(build, prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The reference outputs and, for an early-exit build, the exit each sample takes."""
    if exit_symbol(build) is None:
        return build.reference(prepared), None
    from mcu_attn.reference.dynamic import run_exits

    outputs, exits = run_exits(build.graph, prepared)
    return outputs.astype(build.output.np_dtype), exits


def class_name(exit_number: int) -> str:
    return FULL if exit_number == 0 else f"early exit {exit_number}"


def mean_over_classes(classes: np.ndarray, profiled: dict[int, dict], measure: Callable[[int], dict],
                      per_class: int) -> dict:
    """Step 2-3 of the module docstring. `classes[i]` is sample i's class, `profiled` the estimates already
    made (sample index -> estimate), `measure(i)` profiles sample i; estimates have instructions, cycles and
    energy_uj."""
    if per_class < 1:
        raise UserError(f"--profile-per-class {per_class}: profile at least one sample per class")
    chosen = {int(c): [int(i) for i in np.flatnonzero(classes == c)[:per_class]] for c in np.unique(classes)}
    missing = [i for members in chosen.values() for i in members if i not in profiled]
    with progress(f"profiling {per_class} sample{'s' if per_class > 1 else ''} per class", total=len(missing),
                  unit="samples") as advance:
        for index in missing:
            profiled[index] = measure(index)
            advance()
    rows, mean = [], {"instructions": 0.0, "cycles": 0.0, "energy_uj": 0.0}
    for number, members in sorted(chosen.items()):
        share = float(np.mean(classes == number))
        estimates = [profiled[i] for i in members]
        row = {"class": class_name(number), "exit": number, "samples": int(np.sum(classes == number)),
               "share": share, "profiled_samples": members}
        for key in mean:
            values = [e[key] for e in estimates]
            row[key] = None if None in values else float(np.mean(values))
            mean[key] = None if mean[key] is None or row[key] is None else mean[key] + share * row[key]
        counts = np.array([e["instructions"] for e in estimates], np.float64)
        row["spread"] = float(np.max(np.abs(counts - counts.mean())) / counts.mean()) if counts.mean() else 0.0
        rows.append(row)
    return {"classes": rows, "mean_instructions": mean["instructions"], "mean_cycles": mean["cycles"],
            "mean_energy_uj": mean["energy_uj"],
            "method": "per class of input (the exit taken), the mean of its profiled samples, weighted by the "
                      "share of samples in the class (docs/dynamic.md)"}


def compare_exits(firmware: list[int], expected: np.ndarray) -> dict:
    """The firmware's exits against the reference's, sample by sample."""
    got = np.array(firmware, np.int64)
    return {"exits_match": bool(np.array_equal(got, expected)), "exit_mismatches": int(np.sum(got != expected)),
            "exit_fraction": float(np.mean(expected > 0))}


def format_lines(section: dict) -> list[str]:
    """The console lines of the mean-energy section."""
    lines = [f"mean per inference over {sum(r['samples'] for r in section['classes'])} samples: "
             f"{section['mean_instructions']:,.0f} instructions, ~{section['mean_cycles']:,.0f} cycles"
             + (f", ~{section['mean_energy_uj']:,.1f} uJ" if section["mean_energy_uj"] is not None else "")
             + " (estimates, weighted by exit class)"]
    if "exits_match" in section:
        lines.append(f"  early exit taken by {section['exit_fraction']:.3f} of the samples; firmware exits "
                     + ("match the reference" if section["exits_match"]
                        else f"DIFFER from the reference on {section['exit_mismatches']} samples"))
    for row in section["classes"]:
        energy = f", ~{row['energy_uj']:,.1f} uJ" if row["energy_uj"] is not None else ""
        lines.append(f"  {row['class']:<14} {row['samples']:>5} samples ({row['share'] * 100:.1f}%): "
                     f"{row['instructions']:,.0f} instructions, ~{row['cycles']:,.0f} cycles{energy} "
                     f"(profiled {len(row['profiled_samples'])}, spread {row['spread'] * 100:.2f}%)")
    return lines
