"""The typed graph IR: static shapes, explicit quantization parameters, first-class attention."""

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.types import DTYPES, QuantParams, TensorType

__all__ = ["DTYPES", "Graph", "Node", "QuantParams", "TensorType"]
