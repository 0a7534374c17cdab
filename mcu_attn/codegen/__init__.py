"""C code generation: IR graph -> memory plan -> kernel calls -> a self-contained C project (see emit.py)."""
