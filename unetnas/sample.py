"""Sampling: DDIM (diffusers' DDIMScheduler on the training schedule) with classifier-free guidance.

Timesteps use "trailing" spacing (Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed",
WACV 2024, Table 2): the first step starts at t = T-1, where training put the noisiest inputs. The "leading"
spacing diffusers used by default starts at t = T - T/steps + 1 and so, at the few steps a search samples with,
feeds the model a noise level it never saw at that timestep (a train/test mismatch that grows as steps shrink).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unetnas.train.recipe import Recipe


def ddim(recipe: Recipe, steps: int):
    from diffusers import DDIMScheduler

    s = DDIMScheduler(
        num_train_timesteps=recipe.num_train_timesteps,
        beta_start=recipe.beta_start,
        beta_end=recipe.beta_end,
        beta_schedule=recipe.beta_schedule,
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=False,
        timestep_spacing="trailing",
    )
    s.set_timesteps(steps)
    return s


@torch.no_grad()
def sample(
    unet,
    text: torch.Tensor,
    uncond: torch.Tensor,
    *,
    recipe: Recipe,
    steps: int = 50,
    cfg: float = 7.5,
    seeds: list[int],
    batch: int = 32,
) -> torch.Tensor:
    """Images (N, C, H, W) for text states (N, T, D); image i starts from noise seeded by ``seeds[i]``."""
    cfg_ = unet.config
    shape = (cfg_.in_channels, cfg_.sample_size, cfg_.sample_size)
    dev, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    out = []
    for lo in range(0, len(text), batch):
        cond = text[lo : lo + batch].to(dev, dtype)
        x = torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds[lo : lo + batch]]
        )
        x = x.to(dev, dtype)
        un = uncond.to(dev, dtype).expand_as(cond)
        sched = ddim(recipe, steps)
        for t in sched.timesteps:
            if cfg == 1.0:
                eps = unet(x, t, encoder_hidden_states=cond).sample
            else:
                e_u, e_c = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([un, cond])).sample.chunk(2)
                eps = e_u + cfg * (e_c - e_u)
            x = sched.step(eps, t, x).prev_sample
        out.append(x.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """VAE latents (as `unetnas data prepare` stored them: (z - shift) x scale) -> images in [-1, 1]."""
    c = vae.config
    shift = c.get("shift_factor") or 0.0
    out = []
    for lo in range(0, len(latents), batch):
        z = latents[lo : lo + batch].to(vae.device) / c.scaling_factor + shift
        out.append(vae.decode(z).sample.float().cpu())
    return torch.cat(out)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def save_grid(images: np.ndarray, path: str | Path, cols: int = 8, scale: int = 4) -> Path:
    """Tile uint8 images into one PNG (nearest-neighbour upscaled so small renders stay readable)."""
    from PIL import Image

    n, h, w, _ = images.shape
    cols = min(cols, n)
    rows = -(-n // cols)
    grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    img = Image.fromarray(grid).resize((cols * w * scale, rows * h * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
