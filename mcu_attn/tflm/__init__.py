"""TensorFlow Lite Micro side by side (the `[tflm]` extra): its Python interpreter run in child processes
(`probe.py`), its smallest working tensor arena found by bisection (`arena.py`), and `mcu-attn compare`
(`compare.py`)."""
