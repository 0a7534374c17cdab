"""mcu-attn: deploy attention models to microcontrollers."""

import os

# The references multiply many small matrices (attention heads of head_dim 8): with OpenBLAS's thread pool each
# product waits for its threads, which on a busy 2-core machine made a 257-token calibration ~35x slower
# (310 s against 8.6 s). One thread unless the user chose otherwise; it must be set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
