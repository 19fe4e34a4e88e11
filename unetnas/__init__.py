"""unetnas: compute-budgeted architecture search for text-to-image diffusion UNets.

Data flows spec -> UNet -> cost -> trial -> proxy -> study -> report/export:

- ``unetnas.spec`` / ``unetnas.space`` / ``unetnas.presets``: the design space as data.
- ``unetnas.build``: the one path from a spec to a diffusers ``UNet2DConditionModel``.
- ``unetnas.cost``: params and FLOPs as a pure function of a spec.
"""

import os

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads made training 50-100x
# slower (bench/bench_trial.py); set before torch loads its OpenMP runtime. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
