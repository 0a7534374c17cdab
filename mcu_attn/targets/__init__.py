"""Microcontroller targets."""
