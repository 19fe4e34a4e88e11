"""unetnas: compute-budgeted architecture search for text-to-image diffusion UNets.

Data flows spec -> UNet -> cost -> trial -> proxy -> study -> report/export:

- ``unetnas.spec`` / ``unetnas.space`` / ``unetnas.presets``: the design space as data.
- ``unetnas.build``: the one path from a spec to a diffusers ``UNet2DConditionModel``.
- ``unetnas.cost``: params and FLOPs as a pure function of a spec.
"""

__version__ = "0.1.0"
