"""The `mcu-attn` command line: a thin layer over `mcu_attn.api`.

Every error a user can cause is a `UserError`: one line on stderr, exit code 2, no traceback, no warning before
it, and nothing left half-written (outputs are written to a temporary name and renamed into place). Warnings
raised while a command runs are held back: dropped when it fails, printed one line each after its output when
it succeeds. `simulate` exits with 1 when some samples failed in the emulator: it prints the results of the
others, then one line per failed sample.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from mcu_attn import __version__, api
from mcu_attn.errors import UserError
from mcu_attn.options import DEFAULT_BITS, BuildOptions


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage on two otherwise)
        raise UserError(message)


def _print_json(payload: dict) -> None:
    json.dump(payload, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def cmd_targets(args: argparse.Namespace) -> None:
    from mcu_attn.targets.table import TARGETS

    rows = [{**t.as_dict(), "clock_mhz": t.clock_hz / 1e6, "flash_kb": t.flash_bytes // 1024,
             "sram_kb": t.sram_bytes // 1024} for t in TARGETS]
    if args.json:
        _print_json({"targets": rows})
        return
    print(f"{'target':<16} {'core':<11} {'fpu':<12} {'clock':>8} {'flash':>9} {'sram':>8}  {'run I':>9} {'V':>5} "
          f"{'WS':>3}  emulation")
    for t, row in zip(TARGETS, rows):
        name = t.name + (f" ({','.join(t.aliases)})" if t.aliases else "")
        clock = f"{row['clock_mhz']:.0f} MHz" if t.clock_hz else "-"
        current = (f"{t.run_current_a * 1e3:.3g} mA{_unverified(t, 'run_current_a')}" if t.run_current_a is not None
                   else "-")
        volts = f"{t.voltage_v:.1f}{_unverified(t, 'voltage_v')}" if t.voltage_v is not None else "-"
        waits = (f"{t.flash_wait_states}{_unverified(t, 'flash_wait_states')}" if t.flash_wait_states is not None
                 else "-")
        emulation = ", ".join(filter(None, (f"QEMU {t.qemu_machine}" if t.qemu_machine else "",
                                            f"Renode {t.renode_platform}" if t.renode_platform else ""))) or "-"
        print(f"{name:<16} {t.core:<11} {t.fpu or '-':<12} {clock:>8} {row['flash_kb']:>6} KB {row['sram_kb']:>5} KB"
              f"  {current:>9} {volts:>5} {waits:>3}  {emulation}")
        if not t.is_host:
            print(f"{'':<16} flash @0x{t.flash_base:08X}, SRAM @0x{t.sram_base:08X} ({t.extra_ram}); console "
                  f"{t.console_uart} @0x{t.console_uart_base:08X}; DWT {'yes' if t.has_dwt else 'no'}")
        print(f"{'':<16} source: {t.source}")
    print("clock: the core clock the estimates assume; flash, sram: the linker's regions; run I: typical supply "
          "current in Run mode at that clock, from flash (datasheet); V: its supply voltage; WS: flash wait states "
          "at that clock. Energy estimates are cycles / clock x run I x V.")
    print("* not verified against the document cited: an estimate built on it is rougher still.")
    print("Every constant's citation: mcu-attn targets --json (\"citations\"), or docs/targets.md.")


def _unverified(target, field: str) -> str:
    """'*' when the target table's citation of `field` says it was not verified."""
    return "*" if "not verified" in target.cite(field).lower() else ""


def cmd_inspect(args: argparse.Namespace) -> None:
    from mcu_attn.summary import summarize

    summary = summarize(api.import_model(args.model))
    if args.json:
        _print_json(summary)
        return
    io = lambda items: ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in items)  # noqa: E731
    print(f"model   {args.model}")
    print(f"inputs  {io(summary['inputs'])}")
    print(f"outputs {io(summary['outputs'])}")
    print(f"params  {summary['params']:,}    MACs {summary['macs']:,}")
    print("ops     " + ", ".join(f"{op} x{count}" for op, count in summary["ops"].items()))
    print(f"attention blocks: {len(summary['attention'])}")
    for block in summary["attention"]:
        print(f"  {block['name']}: {block['heads']} heads x {block['head_dim']}, seq {block['seq_len']}, "
              f"{block['pattern']}")


def cmd_eval(args: argparse.Namespace) -> None:
    from mcu_attn.data import load_labels, load_stack
    from mcu_attn.outputs import check_output_file, save_npy_atomic

    inputs = (args.model, args.data, args.labels, args.calib)
    if args.outputs:
        check_output_file(args.outputs, "--outputs", inputs)
    options = _build_options(args, bits=32 if args.float else args.bits)
    data = load_stack(args.data, "data")
    labels = load_labels(args.labels, data.shape[0]) if args.labels else None
    result = api.evaluate(args.model, data, labels, options)
    bits = options.bits
    payload = {"model": args.model, "mode": "float" if bits == 32 else f"int{bits}", "bits": bits,
               "samples": result["samples"], "accuracy": result.get("accuracy")}
    for key in ("pruning", "quantization", "attention", "low_rank", "token_prune", "early_exit", "streaming"):
        if key in result:
            payload[key] = result[key]
    if args.outputs:
        save_npy_atomic(args.outputs, result["outputs"], "--outputs", inputs)
        payload["outputs_path"] = args.outputs
    if args.json:
        _print_json(payload)
    else:
        accuracy = "n/a (no labels)" if payload["accuracy"] is None else f"{payload['accuracy']:.4f}"
        print(f"{payload['mode']} reference on {payload['samples']} samples: accuracy {accuracy}")
        if "pruning" in payload:
            print(_pruning_line(payload["pruning"]))
        if "attention" in payload:
            print("  " + describe_attention(payload["attention"]))
        if "low_rank" in payload:
            print("  " + describe_low_rank(payload["low_rank"]))
        for line in describe_dynamic(payload):
            print("  " + line)
        if "quantization" in payload:
            report = payload["quantization"]
            observers = ", ".join(f"{count} {OBSERVERS.get(name, name)}"
                                  for name, count in sorted(report["observer_counts"].items()))
            print(f"  weights {report['weight_bits']}-bit"
                  + (f" (kept at 8-bit: {', '.join(report['kept_8bit'])})" if report["kept_8bit"] else "")
                  + f"; activation ranges: {observers}")


OBSERVERS = {"minmax": "min/max", "mse": "clipped (least squared error)"}


def describe_low_rank(report: dict) -> str:
    """One line: the layers --low-rank factored, at which ranks, and what that saves."""
    layers = report["layers"]
    ranks = ", ".join(f"{layer['layer']} {layer['k']}x{layer['n']} -> rank {layer['rank']}" for layer in layers)
    line = (f"low rank (--low-rank {report['requested']}): {len(layers)} layer{'s' if len(layers) != 1 else ''} "
            f"factored, {report['macs_saved']:,} MACs and {report['weights_saved']:,} weights saved"
            + (f" ({ranks})" if layers else ""))
    if "error" in report:
        line += f"; error {report['error']:.3g} <= tolerance {report['tolerance']:g} ({report['compared']})"
    return line


def describe_attention(choice: dict | None, blocks: list[dict] | None = None) -> str:
    """One line: the attention the model runs with, and for --attention auto what was compared."""
    if choice is None:
        kinds = sorted({b["pattern"] for b in blocks or []})
        count = len(blocks or [])
        return (f"attention: as the model has it, {count} block{'s' if count != 1 else ''}"
                + (f" ({'; '.join(kinds)})" if kinds else ""))
    line = f"attention: {choice['chosen']}"
    if "tried" in choice:
        last = choice["tried"][-1] if choice["tried"] else None
        verdict = (f"error {last['error']:.3g} <= tolerance {choice['tolerance']:g}" if choice["chosen"] != "dense"
                   else f"no pattern within tolerance {choice['tolerance']:g}")
        line += (f" (--attention auto, {len(choice['tried'])} candidates on {choice['samples']} calibration "
                 f"samples, {verdict}; compared {choice['compared']})")
    if "blocks" in choice:  # linformer: each block's calibration error and whether it was projected
        line += (f" on {sum(b['replaced'] for b in choice['blocks'])} of {len(choice['blocks'])} blocks (error <= "
                 f"tolerance {choice['tolerance']:g}; compared {choice['compared']}): " + ", ".join(
                     f"{b['block']} {'projected' if b['replaced'] else 'kept'} ("
                     + (f"error {b['error']:.3g}" if "error" in b else b["why"]) + ")" for b in choice["blocks"]))
    masses = choice.get("attention_mass", {})
    if masses:
        line += "; dense attention mass kept per block: " + ", ".join(f"{m:.3f}" for m in masses.values())
    return line


def _pruning_line(report: dict) -> str:
    """One line: what pruning removed and saved, and the accuracy with and without the refit when known."""
    before, after = report["before"], report["after"]
    heads = " ".join(f"{b['heads_after']}/{b['heads_before']}" for b in report["heads"])
    channels = " ".join(f"{c['channels_after']}/{c['channels_before']}" for c in report["channels"])
    parts = ([f"heads kept {heads}"] if heads else []) + ([f"FFN channels kept {channels}"] if channels else [])
    parts.append(f"params {before['params']:,} -> {after['params']:,}, MACs {before['macs']:,} -> {after['macs']:,}")
    if "flash_bytes" in after:
        parts.append(f"planned weights {before['flash_bytes']:,} -> {after['flash_bytes']:,} B")
    accuracy = report.get("accuracy")
    if accuracy:
        parts.append(f"accuracy unpruned {accuracy['unpruned']:.4f}, pruned {accuracy['without_reconstruction']:.4f} "
                     f"without the refit, {accuracy['least_squares_only']:.4f} with the least-squares refit, "
                     f"{accuracy['with_reconstruction']:.4f} after fine-tuning")
    return "  pruning: " + "; ".join(parts)


def describe_dynamic(reports: dict) -> list[str]:
    """One line each for --token-prune and --early-exit: what was chosen and what it costs on the calibration data."""
    lines = []
    prune = reports.get("token_prune")
    if prune:
        line = ("token pruning: none within tolerance" if prune["chosen"] is None else
                f"token pruning: keep {prune['keep']} tokens + the class token after block {prune['block']}, "
                f"MACs {prune['macs_unpruned']:,} -> {prune['macs']:,}, top-1 changed on {prune['changed']:.3f} of "
                f"{prune['samples']} calibration samples")
        lines.append(line + (f" (auto, {len(prune['tried'])} candidates, tolerance {prune['tolerance']:g})"
                             if "tried" in prune else ""))
    exit_ = reports.get("early_exit")
    if exit_:
        line = ("early exit: none within tolerance" if exit_["chosen"] is None else
                f"early exit after block {exit_['block']} at confidence {exit_['threshold']:g}: "
                f"{exit_['exit_fraction']:.3f} of the calibration samples exit, top-1 changed on "
                f"{exit_['changed']:.3f}, expected MACs {exit_['expected_macs']:,} of {exit_['macs_full']:,}")
        if "exit_fraction_on_data" in exit_:
            line += f"; {exit_['exit_fraction_on_data']:.3f} of these samples exit"
        lines.append(line + (f" (auto, {len(exit_['tried'])} candidates, tolerance {exit_['tolerance']:g})"
                             if "tried" in exit_ else ""))
    stream = reports.get("streaming")
    if stream:
        line = (f"streaming: ma_step with an event threshold of {stream['delta']} input steps "
                f"({stream['delta'] * stream['input_scale']:.4g} in input units); the newest output depends on "
                f"{stream['receptive_field']} positions, the window has {stream['window']}: a stream "
                + ("equals re-running the window" if stream["exact_over_a_stream"]
                   else "sees further back than the window"))
        if "skipped" in stream:
            line += (f"; {stream['skipped']:.3f} of the calibration steps skipped, top-1 changed on "
                     f"{stream['changed']:.3f} (auto, {len(stream['tried'])} candidates, tolerance "
                     f"{stream['tolerance']:g})")
        lines.append(line)
    return lines


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def cmd_build(args: argparse.Namespace) -> None:
    import time

    from mcu_attn.build import build

    started = time.monotonic()
    options = _build_options(args, bits=args.bits, sram_budget=args.sram_budget, prefix=args.prefix)
    report = build(args.model, args.target, args.output, options, on_plan=_print_plan, force=args.force)
    elapsed = time.monotonic() - started
    _print_summary(args, report, elapsed)


def _print_plan(plan: dict) -> None:
    """What `build` is about to compile: the attention it runs with and the memory plan per layer."""
    print(f"plan for {plan['target']} (--bits {plan['bits']}):", flush=True)
    print("  " + describe_attention(plan["attention_choice"], plan["attention"]))
    if plan["pruning"]:
        print(_pruning_line(plan["pruning"]))
    if plan.get("low_rank"):
        print("  " + describe_low_rank(plan["low_rank"]))
    for line in describe_dynamic(plan["dynamic"]):
        print("  " + line)
    _print_layer_memory(plan)
    sys.stdout.flush()


def _print_layer_memory(report: dict) -> None:
    """The memory plan per layer, known before compiling: arena bytes live while each kernel runs."""
    layers = [layer for layer in report["layers"] if layer["kind"] != "view"]
    peak = max((layer["live_bytes"] for layer in layers), default=0)
    print(f"  planned RAM per layer (arena {report['arena_bytes']:,} B, query tile {report['query_tile']}"
          + (f", --sram-budget {report['sram_budget']:,} B" if report["sram_budget"] else "") + "):")
    width = min(48, max((len(layer["name"]) for layer in layers), default=5))
    for layer in layers:
        name = layer["name"] if len(layer["name"]) <= width else "..." + layer["name"][3 - width:]
        scratch = f" incl. scratch {layer['scratch_bytes']:,}" if layer["scratch_bytes"] else ""
        mark = "  <- peak" if layer["live_bytes"] == peak else ""
        print(f"    {name:<{width}} {layer['op']:<12} {layer['live_bytes']:>8,} B{scratch}{mark}")


def _print_summary(args: argparse.Namespace, report: dict, elapsed: float) -> None:
    check = report["host_check"]
    if report["target"] == "host":
        verdict = ""
        if check:
            agreement = ("bit-exact" if check["bit_exact"] else f"max |error| {check['max_abs_error']:.3g}")
            verdict = f"; host check on {check['samples']} {check['source']} samples: {agreement}"
        print(f"built {args.output} for {report['target']} (--bits {report['bits']}) in {elapsed:.1f} s: arena "
              f"{report['ram_bytes']:,} B, const data {report['flash_bytes']:,} B{verdict}")
        return
    memory = report["memory"]
    print(f"built {args.output}/{report['elf']} for {report['target']} ({report['core']}, --bits {report['bits']}) "
          f"in {elapsed:.1f} s")
    constants = report["planned"]["flash_bytes"]
    print(f"  flash {report['flash_bytes']:>9,} B of {memory['flash']['bytes']:,} "
          f"({_percent(report['flash_bytes'], memory['flash']['bytes'])}): weights and operator parameters "
          f"{constants:,} B, code and the rest {report['flash_bytes'] - constants:,} B")
    stack = report["stack"]
    print(f"  SRAM  {report['ram_bytes']:>9,} B of {memory['sram']['bytes']:,} "
          f"({_percent(report['ram_bytes'], memory['sram']['bytes'])}): arena {report['arena_bytes']:,} B, "
          f"data+bss+noinit {report['ram_static_bytes']:,} B (arena included), stack {stack['bytes']:,} B "
          f"({' > '.join(f['function'] for f in stack['chain'])})")
    print(f"  {report['params']:,} params, {report['macs']:,} MACs, {len(report['layers'])} layer functions"
          + (f"; Renode: {', '.join(report['renode'])}" if report["renode"] else "")
          + (f"; QEMU: -M {report['qemu_machine']}" if report["qemu_machine"] else ""))
    emulated = report.get("emulated") or {}
    if "error" in emulated:
        print(f"  emulator: not run ({emulated['error']})")
    elif emulated:
        energy = f", ~{emulated['energy_uj']:,.1f} uJ" if emulated["energy_uj"] is not None else ""
        print(f"  one inference in the emulator ({emulated['sample']}): "
              f"{'bit-exact' if emulated['bit_exact'] else 'DIFFERS from the reference'}, "
              f"{emulated['instructions']:,} instructions, ~{emulated['cycles']:,} cycles, "
              f"~{emulated['time_ms']:.2f} ms{energy} (estimates); {args.output}/report.html")


def cmd_simulate(args: argparse.Namespace) -> int:
    from mcu_attn.data import load_labels, load_stack
    from mcu_attn.sim.report import format_table
    from mcu_attn.sim.run import SimOptions, simulate

    data = load_stack(args.data, "data") if args.data else None
    labels = None
    if args.labels:
        if data is None:
            raise UserError("--labels needs --data (the labels of those samples)")
        labels = load_labels(args.labels, data.shape[0])
    if args.top < 0:
        raise UserError(f"--top {args.top}: give the number of layers to list (0 or more)")
    options = SimOptions(engine=args.engine, limit=args.limit, cycle_model=args.cycle_model, model=args.model,
                         calib=args.calib, timeout_s=args.timeout, profile_per_class=args.profile_per_class)
    result = simulate(args.dir, data, labels, options)
    if args.json:
        _print_json(result)
    else:
        print(format_table(result, args.top))
    failed = result["failed_samples"]
    for failure in failed:  # the results above cover the other samples; the exit code says some failed
        print(f"mcu-attn: sample {failure['sample']} failed: {failure['error']}", file=sys.stderr)
    return 1 if failed else 0


def cmd_compare(args: argparse.Namespace) -> None:
    from mcu_attn.data import load_labels, load_stack
    from mcu_attn.tflm.compare import compare, format_table, require_tflm

    require_tflm()
    data = load_stack(args.data, "data")
    labels = load_labels(args.labels, data.shape[0]) if args.labels else None
    result = compare(args.dir, args.tflm, data, labels, args.limit)
    if args.json:
        _print_json(result)
    else:
        print(format_table(result))


def cmd_sweep(args: argparse.Namespace) -> None:
    from mcu_attn.sweep import SweepOptions, format_table, sweep

    options = SweepOptions(target=args.target, calib=args.calib, data=args.data, labels=args.labels,
                           grid=tuple(args.grid or ()), goal=args.goal, max_drop=args.max_drop, max_ram=args.max_ram,
                           max_flash=args.max_flash, jobs=args.jobs)
    payload = sweep(args.model, args.output, options)
    if args.json:
        _print_json(payload)
    else:
        print(format_table(payload, args.output))


def _build_options(args: argparse.Namespace, **given) -> BuildOptions:
    """The BUILD OPTIONS `eval` and `build` share, as the one options value every command compiles from."""
    return BuildOptions(calib=args.calib, attention=args.attention, low_rank=args.low_rank, tolerance=args.tolerance,
                        auto_metric=args.auto_metric, prune_heads=args.prune_heads, prune_ffn=args.prune_ffn,
                        prune_finetune=args.prune_finetune,
                        token_prune=args.token_prune, early_exit=args.early_exit,
                        streaming=args.streaming, **given)


def _prune_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prune-heads", type=float, default=0.0, metavar="R",
                        help="remove this fraction of the attention heads (the least important on the calibration "
                             "data, ranked across layers; every block keeps one), refitting what follows")
    parser.add_argument("--prune-ffn", type=float, default=0.0, metavar="R",
                        help="remove this fraction of the FFN hidden channels, likewise")
    parser.add_argument("--prune-finetune", type=int, default=BuildOptions.prune_finetune, metavar="STEPS",
                        help="after the least-squares refit, train the refit layers towards the unpruned model's "
                             "outputs on the calibration data for this many steps (default %(default)s; 0: the "
                             "refit only)")


def cmd_flash(args: argparse.Namespace) -> None:
    from mcu_attn.flash import FlashOptions, flash

    for line in flash(args.dir, FlashOptions(probe=args.probe, dry_run=args.dry_run, monitor=args.monitor,
                                             calibrate=args.calibrate)):
        print(line)


def _attention_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attention", metavar="dense|PATTERN|auto|linformer:K",
                        help="replace dense attention with a sparse pattern: local:W, strided:K, dilated:W,D, "
                             "block:B[,L[,S[,G]]], joined by commas, each with global:G (auto: the cheapest pattern "
                             "whose outputs on the calibration data stay within --tolerance of dense); dense: every "
                             "key, a trained pattern kept as a mask; linformer:K: keys and values projected to K "
                             "rows in each block that stays within --tolerance. Default: the attention the model has")
    parser.add_argument("--low-rank", metavar="auto|R",
                        help="replace linear layers by two low-rank factors (truncated SVD) where that saves MACs: "
                             "rank R for every such layer, or auto: per layer the smallest rank that keeps the "
                             "outputs on the calibration data within --tolerance")
    parser.add_argument("--tolerance", type=float,
                        help="--attention auto and --low-rank auto: how far the outputs on the calibration data "
                             "may move from dense's, as a fraction (default 0.01): for a classifier the share of top-1 "
                             "predictions that change, otherwise the relative error of all outputs (--auto-metric)")
    parser.add_argument("--token-prune", metavar="auto|K[,after:B]",
                        help="after block B's attention (default 0) keep the class token and the K tokens it attends "
                             "to most; auto: the fewest MACs whose top-1 on the calibration data stays within "
                             "--tolerance (docs/dynamic.md)")
    parser.add_argument("--early-exit", metavar="auto|THRESHOLD[,after:B]",
                        help="a classifier head after block B (default 0), fitted on the calibration data; the "
                             "firmware stops there when its softmax confidence reaches THRESHOLD; auto: the fewest "
                             "expected MACs within --tolerance (docs/dynamic.md)")
    parser.add_argument("--streaming", nargs="?", const="auto", metavar="auto|DELTA",
                        help="causal models with local attention: ma_step() computes only the newest position, "
                             "each attention's past keys and values in a ring buffer, and skips a step whose input "
                             "changed by less than DELTA (input units; 0 never skips; auto, the default: the largest "
                             "within --tolerance on the calibration data; docs/dynamic.md)")
    parser.add_argument("--auto-metric", choices=("top1", "relative-error"),
                        help="--attention auto: compare top-1 classes (at every position of a sequence) or the "
                             "relative error of all outputs (default: top1 for a [1, C] classifier output, "
                             "relative-error otherwise)")


def build_parser() -> argparse.ArgumentParser:
    from mcu_attn.sim.unicorn import INFER_TIMEOUT_S

    parser = _Parser(prog="mcu-attn", description="Deploy attention models to microcontrollers.")
    parser.add_argument("--version", action="version", version=f"mcu-attn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    targets = sub.add_parser("targets", help="the boards and cores mcu-attn knows")
    targets.add_argument("--json", action="store_true")
    targets.set_defaults(func=cmd_targets)

    inspect = sub.add_parser("inspect", help="graph summary: inputs, outputs, params, MACs, ops, attention blocks")
    inspect.add_argument("model")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)

    evaluate = sub.add_parser("eval", help="accuracy of the reference on a stack of samples")
    evaluate.add_argument("model")
    evaluate.add_argument("--data", required=True, help=".npy stack of samples along axis 0")
    evaluate.add_argument("--labels", help=".npy integer class per sample")
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--float", action="store_true", help="the float reference (same as --bits 32)")
    mode.add_argument("--bits", type=int, choices=(8, 4, 32), default=DEFAULT_BITS,
                      help=f"8/4: the integer reference with 8- or 4-bit weights; 32: float (default {DEFAULT_BITS})")
    evaluate.add_argument("--calib", help=".npy stack of calibration samples (a float model needs it for --bits 8 "
                                          "and 4; --attention auto)")
    _prune_options(evaluate)
    _attention_options(evaluate)
    evaluate.add_argument("--outputs", help="write the output stack to this .npy file")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_eval)

    build = sub.add_parser("build", help="generate, compile and check C code for a target")
    build.add_argument("model")
    build.add_argument("--target", required=True,
                       help="a target name or alias (`mcu-attn targets`): a Cortex-M part or core, or host")
    build.add_argument("-o", "--output", required=True, help="output directory (replaced when made by a build)")
    build.add_argument("--force", action="store_true",
                       help="replace -o DIR even when it holds files the last build did not write")
    build.add_argument("--bits", type=int, choices=(8, 4, 32), default=DEFAULT_BITS,
                       help=f"8/4: integer weights (int8 activations); 32: the float baseline (default {DEFAULT_BITS})")
    build.add_argument("--calib", help=".npy stack of calibration samples (a float model needs it for --bits 8 and "
                                       "4; a pre-quantized model brings its own scales)")
    build.add_argument("--sram-budget", type=int, metavar="BYTES",
                       help="bytes for the planned RAM (arena + input/output buffers): the largest attention query "
                            "tile that fits, or an error naming the minimum")
    build.add_argument("--prefix", default="ma", metavar="NAME",
                       help="start every symbol of the model files with NAME_ (macros NAME_ in capitals) instead "
                            "of ma_, so that several models link into one application (docs/firmware.md)")
    _prune_options(build)
    _attention_options(build)
    build.set_defaults(func=cmd_build)

    simulate = sub.add_parser("simulate", help="run a Cortex-M build in an emulator: outputs checked against the "
                              "reference, instructions counted per layer, cycles and energy estimated")
    simulate.add_argument("dir", help="a directory made by `mcu-attn build MODEL --target T -o DIR`")
    simulate.add_argument("--data", help=".npy stack of samples (default: the first calibration samples)")
    simulate.add_argument("--labels", help=".npy integer class per sample (accuracy)")
    simulate.add_argument("--engine", choices=("unicorn", "qemu", "renode"), default="unicorn",
                          help="unicorn (in-process, default), qemu (qemu-system-arm) or renode")
    simulate.add_argument("--limit", type=int, help="simulate only the first N samples")
    simulate.add_argument("--cycle-model", help="JSON file overriding cycle-model constants (docs/cycle-model.md)")
    simulate.add_argument("--model", help="the ONNX model, when report.json's path no longer points at it")
    simulate.add_argument("--calib", help="the calibration .npy, when report.json's path no longer points at it")
    simulate.add_argument("--timeout", type=int, metavar="SECONDS",
                          help=f"host seconds one inference may take in Unicorn (default: {INFER_TIMEOUT_S}, more for "
                               f"models with more MACs)")
    simulate.add_argument("--profile-per-class", type=int, default=1, metavar="N",
                          help="profile the first N samples of each class for the mean energy per inference or per "
                               "step (an early-exit build: the exit each sample takes; a stream: skipped, filling and "
                               "full steps; otherwise all samples are one class; default 1; docs/dynamic.md)")
    simulate.add_argument("--top", type=int, default=10, help="layers listed in the table (default 10)")
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(func=cmd_simulate)

    trade = sub.add_parser("sweep", help="the energy/accuracy trade-off: build, measure and emulate a grid of "
                                         "options, mark the Pareto front, recommend one for a goal")
    trade.add_argument("model")
    trade.add_argument("--target", required=True, help="a Cortex-M target (`mcu-attn targets`)")
    trade.add_argument("--calib", required=True, help=".npy stack of calibration samples")
    trade.add_argument("--data", required=True, help=".npy stack of samples the accuracy is measured on (a causal "
                       "model: also a stream of positions [S, F])")
    trade.add_argument("--labels", required=True, help=".npy integer class per sample")
    trade.add_argument("-o", "--output", required=True, help="output directory (points are cached there)")
    trade.add_argument("--grid", action="append", metavar="AXIS=V1,V2,...",
                       help="replace an axis of the default grid: bits, attention, prune (heads and FFN together), "
                            "prune-heads, prune-ffn; or add one: token-prune, early-exit, streaming (none or a "
                            "value of the build flag; measured as the mean over --data); repeat for several axes")
    trade.add_argument("--goal", choices=("battery", "latency", "size", "accuracy"),
                       help="recommend the point with the least energy, cycles or flash, or the most accurate")
    trade.add_argument("--max-drop", type=float, metavar="FRACTION",
                       help="with --goal: accuracy the recommendation may lose against the baseline")
    trade.add_argument("--max-ram", type=int, metavar="BYTES", help="with --goal: RAM limit")
    trade.add_argument("--max-flash", type=int, metavar="BYTES", help="with --goal: flash limit")
    trade.add_argument("--jobs", type=int, help="points built at once (default: the cores)")
    trade.add_argument("--json", action="store_true")
    trade.set_defaults(func=cmd_sweep)

    board = sub.add_parser("flash", help="program a Cortex-M build into a board (pyOCD or OpenOCD), verify, reset; "
                                         "--monitor compares the board's cycles with the estimate")
    board.add_argument("dir", help="a directory made by `mcu-attn build MODEL --target T -o DIR`")
    board.add_argument("--probe", choices=("pyocd", "openocd"),
                       help="the programming tool (default: pyOCD when installed, else OpenOCD)")
    board.add_argument("--dry-run", action="store_true", help="print the programming command and stop")
    board.add_argument("--monitor", metavar="PORT", help="serial port of the board's console: run the first "
                       "calibration sample and print the measured cycles and checksum beside the emulator's")
    board.add_argument("--calibrate", metavar="FILE", help="with --monitor: write a --cycle-model JSON fitted to "
                       "the measured cycles")
    board.set_defaults(func=cmd_flash)

    compare = sub.add_parser("compare", help="our firmware next to TensorFlow Lite Micro on the same inputs: top-1 "
                             "agreement, output difference in LSBs, accuracy, TFLM's minimal arena against our RAM "
                             "(needs the [tflm] extra)")
    compare.add_argument("dir", help="an integer build: `mcu-attn build MODEL --target T -o DIR`")
    compare.add_argument("--tflm", required=True, metavar="MODEL.tflite", help="the .tflite model TFLM runs")
    compare.add_argument("--data", required=True, help=".npy stack of float samples along axis 0")
    compare.add_argument("--labels", help=".npy integer class per sample (accuracy of each)")
    compare.add_argument("--limit", type=int, help="compare only the first N samples")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings(record=True) as caught:  # shown after the output, never before an error line
        try:
            args = build_parser().parse_args(argv)
            status = args.func(args) or 0
        except UserError as err:
            print(f"mcu-attn: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # the reader (`| head`) went away: stop quietly, as other command-line tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
    for message in dict.fromkeys(str(w.message).splitlines()[0] for w in caught if str(w.message).strip()):
        print(f"mcu-attn: warning: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
