"""PyTorch reference implementation of the tst model, written from docs/model.md.

It favours readability over speed: the attention patterns are explicit
boolean masks over a dense score matrix, and AdamW is written out by hand so
that its decay rule and clipping follow the spec line by line. The parity
suite runs it in float64 as the reference for the float32 C engine.

Run it with Debian's interpreter, /usr/bin/python3, which has python3-torch.
"""

import math
from dataclasses import dataclass, field

import torch
from torch import nn
import torch.nn.functional as F

LAYER_NORM_EPS = 1e-5


@dataclass
class Config:
    """Model configuration, with the fields and defaults of docs/model.md."""

    context: int = 96
    horizon: int = 24
    patch_len: int = 16
    patch_stride: int = 8
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    attention: str = "local"
    window: int = 8
    quantiles: list = field(default_factory=lambda: [0.025, 0.1, 0.5, 0.9, 0.975])

    @property
    def num_patches(self):
        return (self.context - self.patch_len) // self.patch_stride + 1

    def patch_starts(self):
        """Return the first step of each token, so the last token ends at step L - 1."""
        n = self.num_patches
        return [self.context - self.patch_len - (n - 1 - i) * self.patch_stride
                for i in range(n)]


def attention_keys(kind, window, n_tokens):
    """Return, for each query token, the ascending list of keys it attends to."""
    rows = []
    for i in range(n_tokens):
        if kind == "dense":
            keys = set(range(i + 1))
        elif kind in ("local", "logsparse"):
            keys = set(range(max(0, i - window + 1), i + 1))
            if kind == "logsparse":
                k = 1
                while i - (window - 1) - 2 ** k >= 0:
                    keys.add(i - (window - 1) - 2 ** k)
                    k += 1
        else:
            raise ValueError(f"unknown attention kind {kind!r}")
        rows.append(sorted(keys))
    return rows


def attention_mask(kind, window, n_tokens):
    """Return an (N, N) boolean mask, True where query i may attend to key c."""
    mask = torch.zeros(n_tokens, n_tokens, dtype=torch.bool)
    for i, keys in enumerate(attention_keys(kind, window, n_tokens)):
        mask[i, keys] = True
    return mask


def normalize(x):
    """Normalize raw windows x (B, L), float64, by their own mean and scale.

    Returns xn (B, L) rounded to float32 as the engine does, and the mean and
    scale (B,) in float64.
    """
    x = x.to(torch.float64)
    mean = x.mean(dim=1)
    std = (x - mean[:, None]).pow(2).mean(dim=1).sqrt()
    usable = (std > 1e-10 * mean.abs()) & (std > 0)
    scale = torch.where(usable, std, torch.ones_like(std))
    xn = ((x - mean[:, None]) / scale[:, None]).to(torch.float32)
    return xn, mean, scale


def normalize_targets(y, mean, scale):
    """Normalize raw targets y (B, H) with each window's statistics, to float32."""
    y = y.to(torch.float64)
    return ((y - mean[:, None]) / scale[:, None]).to(torch.float32)


class Attention(nn.Module):
    """Multi-head self-attention restricted to a causal sparse pattern."""

    def __init__(self, config):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        mask = attention_mask(config.attention, config.window, config.num_patches)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, a):
        batch, n_tokens, d_model = a.shape
        head_size = d_model // self.n_heads
        q, k, v = self.qkv(a).split(d_model, dim=2)

        # (B, N, D) -> (B, NH, N, DH): head j uses columns [j*DH, (j+1)*DH).
        def heads(t):
            return t.view(batch, n_tokens, self.n_heads, head_size).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(head_size)
        scores = scores.masked_fill(~self.mask, float("-inf"))
        o = torch.softmax(scores, dim=-1) @ v
        o = o.transpose(1, 2).reshape(batch, n_tokens, d_model)
        return self.out(o)


class FeedForward(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff)
        self.fc2 = nn.Linear(config.d_ff, config.d_model)

    def forward(self, f):
        return self.fc2(F.gelu(self.fc1(f), approximate="none"))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model, eps=LAYER_NORM_EPS)
        self.attn = Attention(config)
        self.ln2 = nn.LayerNorm(config.d_model, eps=LAYER_NORM_EPS)
        self.ffn = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, h):
        h = h + self.dropout(self.attn(self.ln1(h)))
        h = h + self.dropout(self.ffn(self.ln2(h)))
        return h


class TstModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        n_tokens, d_model = config.num_patches, config.d_model
        n_outputs = config.horizon * len(config.quantiles)
        self.patch = nn.Linear(config.patch_len, d_model)
        self.pos = nn.Parameter(torch.zeros(n_tokens, d_model))
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(n_tokens * d_model, n_outputs)
        # Interval offsets (H, Q) in normalized units, added to the sorted
        # quantiles at inference; not a parameter (docs/model.md, Calibration).
        self.register_buffer("calibration",
                             torch.zeros(config.horizon, len(config.quantiles)))
        starts = torch.tensor(config.patch_starts())
        self.register_buffer("patch_index",
                             starts[:, None] + torch.arange(config.patch_len)[None, :],
                             persistent=False)

    def parameter_names(self):
        """Return the parameter names in the documented order (the blob's order)."""
        names = ["patch.weight", "patch.bias", "pos"]
        for i in range(self.config.n_layers):
            for part in ("ln1", "attn.qkv", "attn.out", "ln2", "ffn.fc1", "ffn.fc2"):
                names += [f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"]
        names += ["ln_f.weight", "ln_f.bias", "head.weight", "head.bias"]
        return names

    def ordered_parameters(self):
        """Return (name, parameter) pairs in the documented order."""
        by_name = dict(self.named_parameters())
        names = self.parameter_names()
        assert sorted(names) == sorted(by_name), "parameter table out of date"
        return [(name, by_name[name]) for name in names]

    def forward(self, xn):
        """Map normalized windows xn (B, L) to normalized predictions (B, H, Q)."""
        batch = xn.shape[0]
        config = self.config
        xn = xn.to(self.pos.dtype)
        patches = xn[:, self.patch_index]                 # (B, N, P)
        h = self.dropout(self.patch(patches) + self.pos)  # (B, N, D)
        for block in self.blocks:
            h = block(h)
        z = self.ln_f(h).reshape(batch, -1)               # token-major, (B, N*D)
        y = self.head(z)                                  # (B, H*Q)
        return y.view(batch, config.horizon, len(config.quantiles))

    def forecast(self, x):
        """Forecast raw windows x (B, L): de-normalized quantiles (B, H, Q), sorted.

        Each step's quantiles are sorted, shifted by the calibration offsets
        and sorted again before de-normalizing."""
        xn, mean, scale = normalize(x)
        with torch.no_grad():
            y = self.forward(xn).to(torch.float64)
        y = y.sort(dim=2).values + self.calibration.to(torch.float64)[None, :, :]
        y = y.sort(dim=2).values
        return y * scale[:, None, None] + mean[:, None, None]


def pinball_loss(pred, yn, quantiles):
    """Mean pinball loss of predictions (B, H, Q) against normalized targets (B, H)."""
    tau = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device)
    u = yn.to(pred.dtype)[:, :, None] - pred
    return torch.maximum(tau * u, (tau - 1) * u).mean()


def is_layer_norm(name):
    """Whether a parameter name belongs to a LayerNorm (ln1, ln2 or ln_f)."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2].startswith("ln")


def init_parameters(model, generator=None):
    """Initialize as docs/model.md specifies, drawing from torch's generator.

    The distributions match the engine's, the values do not (the engine draws
    from xoshiro256**).
    """
    with torch.no_grad():
        for name, param in model.ordered_parameters():
            if is_layer_norm(name):
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name == "pos":
                param.uniform_(-0.02, 0.02, generator=generator)
            elif param.dim() == 2:
                bound = 1.0 / math.sqrt(param.shape[1])
                param.uniform_(-bound, bound, generator=generator)
            else:
                param.zero_()


class AdamW:
    """AdamW with global-norm clipping and decoupled decay, as the spec gives it.

    Each step: the global gradient norm is the square root of the sum of
    every squared gradient; when max_norm > 0 and the norm exceeds it, every
    gradient is scaled by max_norm / norm. Then, with t the step count,
      m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2
      p = p - lr (m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps) + wd p)
    where wd applies only to 2-D weights other than "pos".
    """

    def __init__(self, named_params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0):
        self.named_params = list(named_params)
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.eps, self.weight_decay = eps, weight_decay
        self.step_count = 0
        self.m = [torch.zeros_like(p) for _, p in self.named_params]
        self.v = [torch.zeros_like(p) for _, p in self.named_params]

    @staticmethod
    def is_decayed(name, param):
        return param.dim() == 2 and name != "pos"

    def step(self, max_norm=0.0, grads=None):
        """Clip and update in place; return the gradient norm before clipping.

        grads, when given, replaces the parameters' .grad (one tensor per
        parameter, in order).
        """
        if grads is None:
            grads = [p.grad for _, p in self.named_params]
        norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
        clip = max_norm / norm if 0 < max_norm < norm else 1.0
        self.step_count += 1
        bias1 = 1 - self.beta1 ** self.step_count
        bias2 = 1 - self.beta2 ** self.step_count
        with torch.no_grad():
            for (name, p), g, m, v in zip(self.named_params, grads, self.m, self.v):
                g = g * clip
                m.mul_(self.beta1).add_((1 - self.beta1) * g)
                v.mul_(self.beta2).add_((1 - self.beta2) * g * g)
                decay = self.weight_decay if self.is_decayed(name, p) else 0.0
                update = (m / bias1) / ((v / bias2).sqrt() + self.eps) + decay * p
                p.sub_(self.lr * update)
        return norm
