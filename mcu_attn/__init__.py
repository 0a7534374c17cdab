"""mcu-attn: deploy attention models to microcontrollers."""

__version__ = "0.1.0"
