"""Pruning methods: how structures are scored and masks or gates updated."""

from tfprune.methods.base import PruningMethod
from tfprune.methods.base import deserialize
from tfprune.methods.base import get
from tfprune.methods.base import register
from tfprune.methods.base import serialize
from tfprune.methods.magnitude import Magnitude
from tfprune.methods.small_world import SmallWorld

__all__ = ['PruningMethod', 'Magnitude', 'SmallWorld', 'get', 'register', 'serialize',
           'deserialize']
