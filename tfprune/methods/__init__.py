"""Pruning methods: how structures are scored and masks or gates updated."""

from tfprune.methods.base import PruningMethod
from tfprune.methods.base import deserialize
from tfprune.methods.base import get
from tfprune.methods.base import names
from tfprune.methods.base import register
from tfprune.methods.base import serialize
from tfprune.methods.magnitude import Magnitude
from tfprune.methods.network_trimming import NetworkTrimming
from tfprune.methods.psp import PSP
from tfprune.methods.small_world import SmallWorld
from tfprune.methods.synaptic_strength import SynapticStrength
from tfprune.methods.synthesis import Synthesis

__all__ = ['PruningMethod', 'Magnitude', 'SmallWorld', 'NetworkTrimming', 'PSP',
           'SynapticStrength', 'Synthesis', 'get', 'names', 'register',
           'serialize',
           'deserialize']
