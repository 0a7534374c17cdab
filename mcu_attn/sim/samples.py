"""Samples through an emulator one at a time, keeping what was measured when one of them fails.

A sample whose inference faults (an invalid memory access, an undefined instruction), times out or prints no
result line raises `SampleFailure`; `SampleRuns` records the failure against the sample's index and goes on with
the next sample in a freshly booted Unicorn instance (a faulted run can leave memory and registers in any state).
The profiled sample is the first one that runs: its profile gives the instructions, cycles and energy, so one
faulting sample costs its own output, never the measurements of the others.

Timeouts: every plain run gets `timeout_s` (--timeout, or the default that scales with the model's MACs); the
profiled run records every executed block and is slower, so it gets `profile_timeout_s`, never less than the
default for the model's size: an explicit --timeout sized for plain runs does not fail a healthy build there.
"""

from __future__ import annotations

from mcu_attn.errors import SampleFailure, UserError
from mcu_attn.progress import progress
from mcu_attn.sim.elf import Firmware
from mcu_attn.sim.profile import LayerRef, Profile
from mcu_attn.sim.unicorn import UnicornRunner
from mcu_attn.targets.table import Target


class SampleRuns:
    def __init__(self, firmware: Firmware, target: Target, timeout_s: int, profile_timeout_s: int,
                 exit_symbol: str | None = None) -> None:
        self.firmware, self.target = firmware, target
        self.timeout_s, self.profile_timeout_s = timeout_s, profile_timeout_s
        self.runner = self._fresh()
        self.failures: dict[int, str] = {}
        self.profiled: int | None = None
        # an early-exit build (docs/dynamic.md): the exit each sample took in Unicorn, read after its run
        self.exit_address = firmware.address(exit_symbol) if exit_symbol else None
        self.exits: dict[int, int] = {}

    def _read_exit(self, index: int) -> None:
        if self.exit_address is not None:
            raw = bytes(self.runner.uc.mem_read(self.exit_address, 4))
            self.exits[index] = int.from_bytes(raw, "little", signed=True)

    def _fresh(self) -> UnicornRunner:
        return UnicornRunner(self.firmware, self.target, self.timeout_s)

    def _failed(self, index: int, err: SampleFailure) -> None:
        self.failures[index] = str(err)
        self.runner = self._fresh()

    def failed(self) -> list[dict]:
        """The failures as report entries: the sample's index and what happened."""
        return [{"sample": index, "error": error} for index, error in sorted(self.failures.items())]

    def run(self, engine_name: str, engine, samples: list[bytes],
            layers: list[LayerRef]) -> tuple[dict[int, bytes], Profile, dict]:
        """(raw outputs by sample index, the profile of the first sample that ran, engine extras) for `samples`
        on `engine_name` ("unicorn", or "qemu"/"renode" with their runner `engine`)."""
        raw: dict[int, bytes] = {}
        for index, sample in enumerate(samples):
            try:
                with progress(f"profiling sample {index} ({engine_name})", total=1) as advance:
                    raw[index], profile, extra = self._profile(engine_name, engine, sample, layers)
                    if engine_name == "unicorn":
                        self._read_exit(index)
                    advance()
            except SampleFailure as err:
                self._failed(index, err)
                continue
            self.profiled = index
            break
        else:
            first = min(self.failures)
            raise UserError(f"every sample failed; sample {first}: {self.failures[first]}")
        rest = range(self.profiled + 1, len(samples))
        with progress(f"simulating ({engine_name})", total=len(rest), unit="samples") as advance:
            for index in rest:
                try:
                    raw[index] = (self.runner if engine_name == "unicorn" else engine).infer(samples[index])
                    if engine_name == "unicorn":
                        self._read_exit(index)
                    advance()
                except SampleFailure as err:
                    self._failed(index, err)
                    advance(note=f"sample {index} failed")
        return raw, profile, extra

    def _profile(self, engine_name: str, engine, sample: bytes, layers: list[LayerRef]):
        if engine_name == "unicorn":
            output, profile = self.runner.profile(sample, layers, self.profile_timeout_s)
            return output, profile, {}
        if engine_name == "qemu":
            from mcu_attn.sim.qemu import PROFILE_TIMEOUT_S

            _, reference = self.runner.profile(sample, layers, self.profile_timeout_s)
            output, profile = engine.profile(sample, layers, reference,
                                             max(PROFILE_TIMEOUT_S, self.profile_timeout_s))
            ours, theirs = reference.total("instructions"), profile.total("instructions")
            return output, profile, {"cross_check": {"unicorn_instructions": ours, "qemu_instructions": theirs,
                                                     "agree": ours == theirs}}
        output = engine.infer(sample)
        _, profile = self.runner.profile(sample, layers, self.profile_timeout_s)
        return output, profile, {"renode": engine.summary()}
