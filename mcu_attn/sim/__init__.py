"""Emulation of built firmware: outputs checked against the numpy reference, instructions counted per layer,
cycles and energy ESTIMATED from those counts (docs/cycle-model.md).

  run.py        `simulate(DIR, data, labels, SimOptions)`: the `mcu-attn simulate` command
  build_dir.py  a build directory's report.json, ELF and reference graph
  elf.py        load image and symbols of the firmware ELF
  unicorn.py    the default engine (in-process Cortex-M CPU model)
  qemu.py       qemu-system-arm on machines whose memory map matches the target
  renode.py     Renode, where installed
  isa.py        capstone classification of executed blocks
  profile.py    executed blocks -> per-layer counts
  native.py     the profiler's C helper (native/trace.c): hook callbacks and the flash cache replay
  cycles.py     per-core timing table + flash wait-state/cache model
  energy.py     cycles x clock x datasheet run current x voltage
"""
