"""actlab's headless engine: activations, model, data, probes, training loop, events, checkpoints.

Import the submodules you need (`actlab.engine.training`, `actlab.engine.events`, ...).
This package imports nothing heavy itself, so `events` and `config` load without torch.
"""

__version__ = "0.1.0"
