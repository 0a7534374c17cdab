"""The console table of `mcu-attn simulate` (the JSON payload is the contract; this is for people)."""

from __future__ import annotations


def estimate(value: float | None, digits: int = 2) -> str:
    """An estimate built on datasheet constants (some unverified): `digits` significant figures, no more."""
    if value is None:
        return "n/a"
    rounded = float(f"{value:.{digits}g}")
    return f"{rounded:,.0f}" if abs(rounded) >= 10 ** (digits - 1) else f"{rounded:#.{digits}g}"


def format_table(result: dict, top: int = 10) -> str:
    lines = []
    if result.get("mode") == "stream":
        from mcu_attn.sim.stream import format_lines

        lines.append(f"{result['target']} ({result['core']}), --bits {result['bits']}, engine {result['engine']}")
        return "\n".join(lines + format_lines(result) + ["", "note: cycles and energy are estimates "
                                                              "(docs/cycle-model.md)"])
    lines.append(f"{result['target']} ({result['core']}), --bits {result['bits']}, engine {result['engine']}"
                 + (f" ({result['machine']})" if result.get("machine") else ""))
    exact = result["mismatched_samples"] == 0  # over the samples that completed (bit_exact also needs all of them)
    verdict = "bit-exact" if exact else f"{result['mismatched_samples']} samples differ"
    if "within_tolerance" in result:  # a float build: the C float kernels round differently from numpy
        verdict = ("within tolerance" if exact else f"{result['mismatched_samples']} samples outside the tolerance") \
            + f", max |error| {result['max_abs_error']:.3g} ({result['comparison']})"
    failed = result.get("failed_samples") or []
    covered = f"{result['samples']}" if not failed else f"{result['samples'] - len(failed)} of {result['samples']}"
    lines.append(f"outputs vs numpy reference on {covered} samples ({result['data']}): {verdict}")
    for failure in failed:
        lines.append(f"  sample {failure['sample']} FAILED: {failure['error']}")
    if result.get("accuracy") is not None:
        lines.append(f"accuracy {result['accuracy']:.4f} (reference {result['reference_accuracy']:.4f})")
    per_mac = (f", {result['instructions_per_mac']:.2f} instr/MAC, {result['cycles_per_mac']:.2f} cycles/MAC"
               if result.get("instructions_per_mac") else "")
    lines.append(f"per inference (sample {result['profiled_sample']}): {result['instructions']:,} instructions, "
                 f"~{result['cycles']:,} cycles (estimate), ~{result['time_ms']:.2f} ms at "
                 f"{result['estimate']['clock_hz'] / 1e6:.0f} MHz"
                 + (f", ~{estimate(result['energy_uj'])} uJ" if result["energy_uj"] is not None else "")
                 + per_mac)
    mean = result.get("mean")
    if mean and (len(mean["classes"]) > 1 or len(mean["classes"][0]["profiled_samples"]) > 1):
        from mcu_attn.sim.dynamic import format_lines

        lines.extend(format_lines(mean))
    breakdown = result["cycle_breakdown"]
    memory = result["memory"]
    lines.append(f"  cycles: core {breakdown['core']:,} + flash wait states {breakdown['flash_data_wait']:,} "
                 f"(data) + {breakdown['flash_fetch_wait']:,} (fetch); data reads {memory['flash_reads']:,} flash / "
                 f"{memory['sram_reads']:,} SRAM, writes {memory['data_writes']:,}")
    if "cross_check" in result:
        check = result["cross_check"]
        lines.append(f"  instructions: qemu {check['qemu_instructions']:,}, unicorn {check['unicorn_instructions']:,}"
                     f" ({'agree' if check['agree'] else 'DIFFER'})")
    if result.get("functions"):
        lines.append("  hottest functions: " + ", ".join(
            f"{f['function']} {f['share'] * 100:.1f}%" for f in result["functions"][:5]))
    if result.get("energy_uj") is None:
        lines.append("  energy: n/a (the target table has no datasheet run current for this target)")
    layers = sorted(result["layers"], key=lambda layer: -layer["cycles"])[:top]
    lines.append("")
    lines.append(f"{'layer':<52} {'op':<11} {'instructions':>12} {'cycles':>11} {'share':>6} {'uJ':>8}")
    for layer in layers:
        name = layer["name"] if len(layer["name"]) <= 52 else "..." + layer["name"][-49:]
        lines.append(f"{name:<52} {layer['op'] or '-':<11} {layer['instructions']:>12,} {layer['cycles']:>11,} "
                     f"{layer['share'] * 100:>5.1f}% {estimate(layer['energy_uj']):>8}")
    if len(result["layers"]) > top:
        lines.append(f"... {len(result['layers']) - top} more layers (--top N, or --json)")
    lines.append("")
    lines.append("note: " + result["estimate"]["note"])
    return "\n".join(lines)
