"""The transforms T and the stage transitions."""

from .dense import DenseLayer
from .residual import BasicTransform, BottleneckTransform
from .transition import DenseTransition, ResidualTransition

__all__ = ['BasicTransform', 'BottleneckTransform', 'DenseLayer', 'ResidualTransition', 'DenseTransition']
