"""Cost of a design as a pure function of its spec: no model is built.

Conventions (see ../shared/reference/environment.md):
- ``macs``: multiply-accumulates of convolution and linear layers (the paper's GMACs, ptflops' convention);
- ``attn_flops``: the attention matmuls QK^T and AV, which that convention leaves out;
- ``flops`` (all ops) = 2 x macs + attn_flops: what ``torch.utils.flop_counter.FlopCounterMode`` counts on a
  meta-device model (norms, activations and biases are not counted there either);
- training FLOPs per sample = 3 x forward FLOPs (forward + backward, the paper's and Kaplan's convention);
- sampling FLOPs per denoising step = forward FLOPs, x 2 with classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unetnas.spec import UNetSpec

TRAIN_FLOPS_PER_FORWARD = 3.0  # fwd + bwd ~ 3x fwd (measured 2.9-3.0x with FlopCounterMode)


@dataclass
class _Tally:
    """Running totals while walking the UNet; ``by_part`` splits forward FLOPs by block kind."""

    params: int = 0
    macs: int = 0
    attn_flops: int = 0
    by_part: dict[str, int] = field(default_factory=dict)

    def conv(self, cin: int, cout: int, k: int, pixels: int, part: str) -> None:
        self.params += cin * cout * k * k + cout
        self._add(part, pixels * cin * cout * k * k)

    def linear(self, fin: int, fout: int, tokens: int, part: str, bias: bool = True) -> None:
        self.params += fin * fout + (fout if bias else 0)
        self._add(part, tokens * fin * fout)

    def norm(self, channels: int) -> None:  # GroupNorm / LayerNorm: weight + bias, no counted FLOPs
        self.params += 2 * channels

    def attend(self, queries: int, keys: int, inner: int) -> None:  # QK^T and AV: 2 matmuls x 2 FLOPs per MAC
        flops = 4 * queries * keys * inner
        self.attn_flops += flops
        self.by_part["attention_matmul"] = self.by_part.get("attention_matmul", 0) + flops

    def _add(self, part: str, macs: int) -> None:
        self.macs += macs
        self.by_part[part] = self.by_part.get(part, 0) + 2 * macs


def _resnet(t: _Tally, s: UNetSpec, cin: int, cout: int, pixels: int) -> None:
    """ResnetBlock2D; ``pixels`` is its output resolution (IF's up/down resnets resample before conv1)."""
    t.norm(cin)
    t.conv(cin, cout, 3, pixels, "resnet")
    t.linear(s.time_embed_dim, cout * (2 if s.resnet_time_scale_shift == "scale_shift" else 1), 1, "resnet")
    t.norm(cout)
    t.conv(cout, cout, 3, pixels, "resnet")
    if cin != cout:
        t.conv(cin, cout, 1, pixels, "resnet")


def _transformer(t: _Tally, s: UNetSpec, c: int, depth: int, cross: bool, tokens: int) -> None:
    """Transformer2DModel: GroupNorm, proj_in, ``depth`` BasicTransformerBlocks, proj_out (inner dim = c)."""
    part = "transformer"
    t.norm(c)
    t.linear(c, c, tokens, part)  # proj_in: Linear or 1x1 conv, same count
    for _ in range(depth):
        t.norm(c)  # self-attention: q, k, v without bias, out with bias
        t.linear(c, 3 * c, tokens, part, bias=False)
        t.attend(tokens, tokens, c)
        t.linear(c, c, tokens, part)
        if cross:  # cross-attention to the text tokens
            t.norm(c)
            t.linear(c, c, tokens, part, bias=False)
            t.linear(s.cross_attention_dim, 2 * c, s.text_len, part, bias=False)
            t.attend(tokens, s.text_len, c)
            t.linear(c, c, tokens, part)
        t.norm(c)  # GEGLU feed-forward, inner 4c
        t.linear(c, 8 * c, tokens, part)
        t.linear(4 * c, c, tokens, part)
    t.linear(c, c, tokens, part)  # proj_out


def _simple_attention(t: _Tally, s: UNetSpec, c: int, tokens: int) -> None:
    """IF's Attention with added KV: self-attention over the pixels with the text keys/values prepended."""
    part = "transformer"
    t.norm(c)
    if s.cross_attention_norm == "group_norm":
        t.norm(s.cross_attention_dim)
    t.linear(c, 3 * c, tokens, part)  # to_q, to_k, to_v (bias)
    t.linear(s.cross_attention_dim, 2 * c, s.text_len, part)  # add_k_proj, add_v_proj (bias)
    t.attend(tokens, tokens + s.text_len, c)
    t.linear(c, c, tokens, part)  # to_out


def _self_attention(t: _Tally, c: int, tokens: int) -> None:
    """diffusers' AttnDown/UpBlock2D attention: GroupNorm, q/k/v/out with bias, over the pixels."""
    part = "transformer"
    t.norm(c)
    t.linear(c, 3 * c, tokens, part)
    t.attend(tokens, tokens, c)
    t.linear(c, c, tokens, part)


def _attention(t: _Tally, s: UNetSpec, kind: str, depth: int, c: int, tokens: int) -> None:
    if kind == "none":
        return
    if kind == "self":
        _self_attention(t, c, tokens)
    elif s.family == "if":
        _simple_attention(t, s, c, tokens)
    else:
        _transformer(t, s, c, depth, kind == "cross", tokens)


def _walk(s: UNetSpec, latent_size: int) -> _Tally:
    t = _Tally()
    n, w, c0, temb = s.n_levels, s.widths, s.widths[0], s.time_embed_dim  # diffusers: C x mult[0] at level 0
    pix = [(latent_size // 2**i) ** 2 for i in range(n)]
    t.conv(s.latent_channels, c0, 3, pix[0], "conv_io")
    t.linear(c0, temb, 1, "embedding")  # TimestepEmbedding on the sinusoidal projection
    t.linear(temb, temb, 1, "embedding")
    if s.addition_embed is not None:
        t.linear(s.addition_embed.projection_input_dim, temb, 1, "embedding")
        t.linear(temb, temb, 1, "embedding")
    # down path
    cin = c0
    for i in range(n):
        for j in range(s.layers_per_block[i]):
            _resnet(t, s, cin if j == 0 else w[i], w[i], pix[i])
            _attention(t, s, s.attention[i], s.transformer_depth[i], w[i], pix[i])
        if i < n - 1:
            if s.family == "if":
                _resnet(t, s, w[i], w[i], pix[i + 1])
            else:
                t.conv(w[i], w[i], 3, pix[i + 1], "resnet")
        cin = w[i]
    # mid block
    _resnet(t, s, w[-1], w[-1], pix[-1])
    if s.mid_attention != "none":
        _attention(t, s, s.mid_attention, s.mid_depth, w[-1], pix[-1])
        _resnet(t, s, w[-1], w[-1], pix[-1])
    # up path: level L pops its res blocks' skips plus the one from the level above (or conv_in)
    prev = w[-1]
    for level in reversed(range(n)):
        skip_in = w[level - 1] if level > 0 else c0
        layers = s.layers_per_block[level] + 1
        for j in range(layers):
            res_in = prev if j == 0 else w[level]
            skip = skip_in if j == layers - 1 else w[level]
            _resnet(t, s, res_in + skip, w[level], pix[level])
            _attention(t, s, s.attention[level], s.transformer_depth[level], w[level], pix[level])
        if level > 0:
            if s.family == "if":
                _resnet(t, s, w[level], w[level], pix[level - 1])
            else:
                t.conv(w[level], w[level], 3, pix[level - 1], "resnet")
        prev = w[level]
    t.norm(c0)
    t.conv(c0, s.latent_channels, 3, pix[0], "conv_io")
    return t


@dataclass(frozen=True)
class Cost:
    """Costs of one design at one resolution and text length, per sample (batch 1)."""

    params: int
    macs: int  # conv + linear multiply-accumulates per forward (paper's GMACs x 1e9)
    attn_flops: int  # QK^T and AV FLOPs per forward
    resolution: int  # image pixels
    text_len: int
    by_part: dict[str, int]

    @property
    def flops(self) -> int:
        """Forward FLOPs, all matmul/conv ops (FlopCounterMode's count)."""
        return 2 * self.macs + self.attn_flops

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def attention_share(self) -> float:
        """Share of forward FLOPs in the attention matmuls (what the GMACs convention misses)."""
        return self.attn_flops / self.flops

    @property
    def transformer_share(self) -> float:
        """Share of forward FLOPs in attention layers (projections, feed-forwards and matmuls)."""
        return (self.by_part.get("transformer", 0) + self.attn_flops) / self.flops

    @property
    def train_flops_per_sample(self) -> float:
        return TRAIN_FLOPS_PER_FORWARD * self.flops

    def sampling_flops(self, steps: int = 50, cfg: bool = True) -> float:
        """FLOPs to sample one image: steps x forward, doubled for classifier-free guidance."""
        return steps * self.flops * (2 if cfg else 1)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "params": self.params,
            "gmacs": self.gmacs,
            "gflops": self.gflops,
            "attention_gflops": self.attn_flops / 1e9,
            "attention_share": self.attention_share,
            "transformer_share": self.transformer_share,
            "train_gflops_per_sample": self.train_flops_per_sample / 1e9,
            "sampling_gflops_per_step": self.flops / 1e9,
            "sampling_gflops_per_step_cfg": 2 * self.flops / 1e9,
            "resolution": self.resolution,
            "text_len": self.text_len,
        }


def cost(spec: UNetSpec, resolution: int | None = None, text_len: int | None = None) -> Cost:
    """Params and FLOPs of ``spec`` at ``resolution`` pixels (default: the spec's) and ``text_len`` tokens."""
    from unetnas.errors import UserError

    res = spec.resolution if resolution is None else resolution
    latent, rem = divmod(res, spec.vae_downsample)
    if res <= 0 or rem or latent % 2 ** (spec.n_levels - 1):
        raise UserError(
            f"must be a positive multiple of {spec.vae_downsample * 2 ** (spec.n_levels - 1)} "
            f"(vae_downsample x 2^(levels-1))",
            field="resolution",
            value=res,
        )
    if text_len is not None:
        if text_len <= 0:
            raise UserError("must be a positive number of tokens", field="text_len", value=text_len)
        spec = spec.model_copy(update={"text_len": text_len})
    t = _walk(spec, latent)
    return Cost(t.params, t.macs, t.attn_flops, res, spec.text_len, dict(t.by_part))
