"""Real training data: `unetnas.data.prepare.prepare` turns images + captions into VAE latents + text states in
safetensors shards; `ShardDataset` reads them back (validated) for training and evaluation.

`prepare` is deliberately not re-exported here: a package attribute named like its submodule would shadow
`unetnas.data.prepare` (the module) for `import unetnas.data.prepare as m` and for monkeypatching.
"""

from unetnas.data.shards import ShardDataset

__all__ = ["ShardDataset"]
