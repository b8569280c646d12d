"""The source-filter parts of a WaveNet vocoder with ``lpc_order`` > 0 (LPCNet, Valin and Skoglund 2019).

Each frame's log-mel features give a linear predictor (``LPCAnalysis``: the contract's
``arrun.contract.features.lpc_from_log_mel`` in torch, float64, from the same constants), which predicts each
sample from the last ``order`` decoded ones (``prediction``); the network is told the prediction and shapes
the distribution of the sample around it. Not a family: ``artrain.models.wavenet`` uses these.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from arrun.contract.codecs import mulaw_decode
from arrun.contract.features import LPC_NOISE_FLOOR, LPC_PREEMPHASIS, FeatureSpec, lpc_constants


class LPCAnalysis(nn.Module):
    """Log-mel frames (..., M) float32 -> predictor coefficients (..., order) float64:
    ``lpc_from_log_mel`` with its inverse FFT written as one product with a cosine table (the first order + 1
    lags only) and the lag window folded into it. The constants are derived from the spec, never trained, and
    are not part of the checkpoint."""

    def __init__(self, spec: FeatureSpec, order: int):
        super().__init__()
        inverse, emphasis, lag_window = lpc_constants(spec, order)
        n, bins = spec.n_fft, spec.n_fft // 2 + 1
        weight = np.full(bins, 2.0 / n)
        weight[[0, -1]] = 1.0 / n                                                     # DC and Nyquist once
        cosines = np.cos(2 * np.pi * np.outer(np.arange(bins), np.arange(order + 1)) / n)  # (bins, order+1)
        self.register_buffer("inverse", torch.from_numpy(inverse.T.copy()), persistent=False)  # (M, bins)
        self.register_buffer("emphasis", torch.from_numpy(emphasis), persistent=False)       # (bins,)
        self.register_buffer("autocorrelation", torch.from_numpy(weight[:, None] * cosines * lag_window),
                             persistent=False)                                               # (bins, order+1)
        self.power, self.order = spec.power, order

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        linear = (torch.exp(frames.double()) @ self.inverse).clamp(min=0.0)          # (..., bins)
        power = linear ** (2 / self.power) * self.emphasis + LPC_NOISE_FLOOR          # (..., bins)
        r = power @ self.autocorrelation                                             # (..., order+1)
        k = r[..., 1] / r[..., 0]                                                    # (...) the first step
        a, error = k[..., None], r[..., 0] * (1 - k * k)                             # (..., 1), (...)
        # (started from a = r[..., :0], it would sum an empty product, which onnxruntime 1.30 mis-shapes)
        for i in range(1, self.order):  # Levinson-Durbin, as features.levinson_durbin
            reverse = torch.arange(i, 0, -1, device=r.device)                        # lags i .. 1
            k = (r[..., i + 1] - (a * r[..., reverse]).sum(-1)) / error              # (...)
            a = torch.cat([a - k[..., None] * a[..., reverse - 1], k[..., None]], dim=-1)  # (..., i+1)
            error = error * (1 - k * k)
        return a                                                                     # (..., order)


def sample_table(levels: int) -> torch.Tensor:
    """(levels + 1,) float32: the sample each code decodes to (``codecs.mulaw_decode``, the contract's numbers
    bit for bit), and 0 for the start symbol (id ``levels``). A lookup, not a formula, so torch and every
    runtime decode the past identically: the mu-law of the prediction amplifies a difference in a sample up to
    46 times."""
    return torch.from_numpy(np.append(mulaw_decode(np.arange(levels), levels), np.float32(0.0)))


def companded(q: torch.Tensor, mu: int) -> torch.Tensor:
    """q = mu p (...), a sample times mu -> ln(1 + mu) mulaw(p) = sign(q) ln(1 + |q|), |q| clipped to mu first: the
    mu-law value of p on the scale where code c sits at ln(1 + mu) (2c / mu - 1). Mu and 1 / ln(1 + mu) live in the
    frame's predictor and in the constants beside it, so a step pays no node for them; in the dtype given (the
    source-filter path runs in float64)."""
    q = q.clamp(-float(mu), float(mu))
    return torch.sign(q) * torch.log1p(q.abs())


def sample_predictor(coeffs: torch.Tensor) -> torch.Tensor:
    """coeffs (..., order) a_k over the pre-emphasised past -> (..., order+1) b_j over the decoded past, float64:
    with e_{t-k} = s_{t-k} - 0.85 s_{t-k-1} and de-emphasis adding 0.85 s_{t-1},
    p_t = sum_k a_k e_{t-k} + 0.85 s_{t-1} = sum_j b_j s_{t-j}, so b_1 = a_1 + 0.85, b_j = a_j - 0.85 a_{j-1},
    b_{order+1} = -0.85 a_order. Once per frame: a step's prediction is then one product."""
    a = coeffs.double()
    zero = torch.zeros_like(a[..., :1])                                              # (..., 1)
    shifted = torch.cat([zero - 1.0, a], dim=-1)                                     # (..., order+1) a_{j-1}, a_0 = -1
    return torch.cat([a, zero], dim=-1) - LPC_PREEMPHASIS * shifted                  # (..., order+1)


def prediction(past: torch.Tensor, predictor: torch.Tensor) -> torch.Tensor:
    """past (..., order+1) s_{t-1}, s_{t-2}, ..., s_{t-order-1}; predictor (..., order+1) ``sample_predictor``'s b
    -> p_t (..., 1) (given mu b, as the WaveNet's frames carry it: mu p_t). Float64 (past is cast), so the order
    of the sum (forward's, the step's, a runtime's) does not show in float32 logits."""
    return (past.double() * predictor).sum(-1, keepdim=True)                          # (..., 1)
