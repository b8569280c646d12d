"""WaveNet (van den Oord et al. 2016) with the Fast WaveNet step (Paine et al. 2016).

Stacks of dilated causal convolutions (kernel k, dilations 1, k, k^2, ..., repeated: every lag of the
receptive field is reached), gated tanh * sigmoid units, residual connections, skip connections summed into a 2-layer output head, a
categorical output, or with ``mixtures`` K > 0 a discretized mixture of K logistics (the input is then the
level's value, not an embedding: 16-bit audio has 65,536 levels). Two optional conditions bias every layer's gates:
- global: a class id (``num_classes`` > 0), one learned bias per class;
- local: log-mel frames (``mel_bins`` > 0; ``arrun.contract.features.FeatureSpec`` with that many mel
  bands), a vocoder's input. Frame f conditions samples f*hop .. f*hop + hop - 1 (upsampling by repetition);
  a one-hidden-layer network turns a frame (with ``mel_normalise``, mapped from [ln(log_floor), 0] onto [-1, 1],
  so its tanh units start unsaturated) into the gate biases of every layer, once per frame. With
  ``lpc_order`` p > 0 the vocoder is source-filter (LPCNet): the frame's linear predictor (computed in the
  graph, ``artrain.source_filter``) predicts each sample from the last p + 1 decoded ones; layer 0 is told the
  prediction, and a prior centred on it is added to the logits over the signal's own codes (docs/contract.md,
  section 11.5.1). The step then carries a second state, ``samples`` (B, p + 1) float64, the last decoded
  samples, newest first (a shift register: 17 numbers cost fewer nodes shifted than addressed).
Activations are channel-last, (B, T, C), so a dilated convolution is one matrix product over its taps
[x_{t-(k-1)d}, ..., x_{t-d}, x_t].

Step state: one tensor ``queue`` (B, R, C) holding a ring buffer per layer, layer i's in rows
off_i .. off_i + n_i - 1 with n_i = (k-1) d_i: slot p mod n_i holds the layer's input at p - n_i (zeros before
the sequence starts). Every row is at its own position (``pos`` (B,), an unbounded int64): step p reads every
layer's past taps of every row with one Gather, writes every layer's input x_p with one ScatterND of B*L rows
of C and nothing is shifted or copied, so a sample costs O(layers) work whatever the receptive field. The write
depends (through the gates) on the taps read, so onnxruntime may bind one buffer as in.queue and out.queue.
A chunk graph unrolls ``roll``, 16 elements (``chunk_block``) per Loop iteration: it reads the past taps of all 16
with one Gather and writes the ring once per block (a Loop-carried ring is copied whole by every write).
The step is laid out for onnxruntime, where a small node costs the same whatever it does: the taps are gathered
layer-major, (L, B, (k-1)C), so they meet their weights in L products of batch B (not B*L products of one row),
the gate biases (condition, features, convolution bias) come from one product, each layer's current tap is one
Gemm onto those, and the skip projections of all layers are one product over the gated outputs side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.features import FeatureSpec
from arrun.contract.schema import StateSpec

from .base import ARModel, gate, shift_right
from ..source_filter import LPCAnalysis, companded, prediction, sample_predictor, sample_table


@dataclass(frozen=True)
class WaveNetConfig:
    vocab_size: int = 256            # categorical output levels (256 mu-law codes for audio)
    num_classes: int = 0             # global condition ids (0: unconditional)
    mel_bins: int = 0                # local conditioning on log-mel frames with this many bands (0: none)
    mel_hop: int = 128               # samples per frame of those features
    mel_hidden: int = 256            # width of the conditioning network's hidden layer (frame -> gate biases)
    stacks: int = 2
    layers_per_stack: int = 10       # dilations 1 .. k^(layers_per_stack - 1) in each stack
    kernel_size: int = 2             # taps per dilated convolution, k
    residual_channels: int = 64
    skip_channels: int = 128
    mixtures: int = 0                # K > 0: a discretized mixture of K logistics over the levels in place of the softmax
    lpc_order: int = 0               # > 0: a source-filter vocoder, each sample predicted from this many (0: none)
    mel_normalise: bool = False      # the conditioning network reads the frames mapped from [ln(log_floor), 0] onto [-1, 1]

    def __post_init__(self):
        if self.kernel_size < 2:
            raise ValueError(f"kernel_size must be >= 2, got {self.kernel_size}")
        if self.lpc_order and (not self.mel_bins or self.mixtures):
            raise ValueError("lpc_order > 0 (a source-filter vocoder) needs mel_bins > 0 and the softmax (mixtures 0)")

    @property
    def dilations(self) -> list[int]:
        return [self.kernel_size**i for i in range(self.layers_per_stack)] * self.stacks

    @property
    def receptive_field(self) -> int:
        """Number of past elements the logits at t can see: x_{t-R} .. x_{t-1}."""
        return (self.kernel_size - 1) * sum(self.dilations) + 1


class WaveNet(ARModel):
    family = "wavenet"
    Config = WaveNetConfig
    graph_kinds = ("step", "full", "chunk")
    chunk_block = 16  # ``roll`` reads the past taps of 16 elements at once and writes the ring once
    training_defaults = {
        "image": dict(steps=300, batch_size=64, lr=2e-3, eval_every=100,
                      model=dict(stacks=2, layers_per_stack=6, residual_channels=32, skip_channels=64)),
        "text": dict(steps=2000, batch_size=16, seq_len=256, lr=2e-3,
                     model=dict(stacks=1, layers_per_stack=8, residual_channels=64, skip_channels=128)),
        "audio": dict(steps=1500, batch_size=8, seq_len=2048, lr=2e-3,
                      model=dict(stacks=2, layers_per_stack=9, residual_channels=32, skip_channels=64)),
    }
    sizes = {"tiny": dict(stacks=1, layers_per_stack=6, residual_channels=16, skip_channels=32),
             "small": dict(stacks=1, layers_per_stack=8, residual_channels=32, skip_channels=64),
             "base": dict(stacks=2, layers_per_stack=10, residual_channels=64, skip_channels=128)}

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = c = config
        C, L, k = c.residual_channels, len(c.dilations), c.kernel_size
        # a softmax model embeds each level (the last id: the start symbol); a mixture model reads the value
        self.embed = nn.Embedding(c.vocab_size + 1, C) if not c.mixtures else _ValueInput(c.vocab_size, C)
        self.convs = nn.ModuleList(nn.Linear(k * C, 2 * C) for _ in range(L))  # taps oldest first -> filter|gate
        self.residuals = nn.ModuleList(nn.Linear(C, C) for _ in range(L - 1))  # the last layer feeds only the skips
        self.skip = nn.Linear(L * C, c.skip_channels)  # every layer's skip projection, side by side
        self.class_bias = nn.Embedding(c.num_classes, L * 2 * C) if c.num_classes else None
        self.local = nn.Sequential(  # the conditioning network: one frame -> every layer's gate biases
            nn.Linear(c.mel_bins, c.mel_hidden), nn.Tanh(),
            nn.Linear(c.mel_hidden, L * 2 * C + bool(c.lpc_order))) if c.mel_bins else None  # [+ the prior's rho]
        if c.lpc_order:  # source-filter: the frame's predictor, and the prediction as a second input
            self.lpc = LPCAnalysis(self.feature_spec, c.lpc_order)
            self.prediction_input = nn.Linear(1, C)
            self.prior_scale = nn.Parameter(torch.tensor(2.0))  # beta = softplus(2) ~ 2.1 at the start
            self.register_buffer("sample_values", sample_table(c.vocab_size).double(), persistent=False)  # (V+1,)
            codes = torch.linspace(-1.0, 1.0, c.vocab_size, dtype=torch.float64)  # (V,) each code's mu-law value
            self.register_buffer("code_values", math.log1p(c.vocab_size - 1) * codes,
                                 persistent=False)  # (V,) the same on ``companded``'s scale
        self.head = nn.Sequential(
            nn.ReLU(), nn.Linear(c.skip_channels, c.skip_channels), nn.ReLU(), nn.Linear(c.skip_channels, self.output_width)
        )
        sizes = [(k - 1) * d for d in c.dilations]  # n_i: ring length of layer i
        offsets = [sum(sizes[:i]) for i in range(L)]
        # the ring geometry as plain lists: (lag, ring length, first row) of every past tap, oldest first per layer
        self._taps = [(j * d, n, off) for d, n, off in zip(c.dilations, sizes, offsets) for j in range(k - 1, 0, -1)]
        self._rings = list(zip(sizes, offsets))

    @property
    def feature_spec(self) -> FeatureSpec | None:
        return FeatureSpec(n_mels=self.config.mel_bins, hop=self.config.mel_hop) if self.config.mel_bins else None

    @property
    def state_period(self) -> int:
        return max(max(n for n, _ in self._rings), self.config.lpc_order + 1)

    @property
    def receptive_field(self) -> int:
        """Predecessors one prediction depends on (the config's (k - 1) * sum(dilations) + 1), which the metadata
        and scoring use; 0 (all) for a vocoder, whose frames are analysed from the whole clip, so it is scored
        whole."""
        return 0 if self.config.mel_bins else self.config.receptive_field

    def state_spec(self) -> tuple[StateSpec, ...]:
        queue = StateSpec("queue", (sum(n for n, _ in self._rings), self.config.residual_channels))
        # source-filter: the last order + 1 decoded samples, newest first: s_{p-1} .. s_{p-1-order}
        # in float64, the dtype the prediction is computed in: a lookup table of float64 is one no int8 conversion
        # quantizes (at 8 bits a table of samples loses the quiet ones)
        samples = StateSpec("samples", (self.config.lpc_order + 1,), dtype="float64")
        return (queue, samples) if self.config.lpc_order else (queue,)

    def frame_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Frames (B, ..., M) -> the gate biases of every layer they add, (B, ..., L*2C) float32 [source-filter:
        float64, then the squared width of the prediction's prior and mu times the frame's ``sample_predictor``,
        (B, ..., L*2C + 1 + order + 1)]. Everything a frame decides is computed here, once per frame; a step
        only reads it."""
        if self.config.mel_normalise:  # ln(log_floor) -> -1, 0 -> 1
            biases = self.local(features * (-2.0 / math.log(self.feature_spec.log_floor)) + 1.0)
        else:
            biases = self.local(features)
        if not self.config.lpc_order:
            return biases  # (B, ..., L*2C)
        n = len(self.convs) * 2 * self.config.residual_channels
        rho = biases[..., n:].double().clamp(-12.0, 6.0)                             # (B, ..., 1)
        mu = self.config.vocab_size - 1
        width = torch.exp(2 * math.log(math.log1p(mu)) - 8.0 - rho)                  # (B, ..., 1) ln(1+mu)^2 e^(-8-rho)
        predictor = mu * sample_predictor(self.lpc(features))                         # (B, ..., order+1) float64
        return torch.cat([biases[..., :n].double(), width, predictor], dim=-1)       # (B, ..., D) float64

    def _prior_parts(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame vectors (..., D) -> their prior's squared width (..., 1) and mu times their sample predictor
        (..., order+1)."""
        n = len(self.convs) * 2 * self.config.residual_channels
        return vectors[..., n:n + 1], vectors[..., n + 1:]

    def _source_filter(self, past: torch.Tensor, width: torch.Tensor,
                       predictor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """past (..., order+1) s_{t-1} .. s_{t-order-1}, the frame's ``_prior_parts`` -> (v_t = ln(1+mu) mu(p_t), the
        prediction on the code scale of ``code_values``, the network's second input (..., 1) float32; the prior it
        adds to the logits (..., V) float32): -beta ln(w + (v_c - v_t)^2), a Student-t centred on the prediction
        (heavy-tailed like an excitation), of squared width w = ln(1+mu)^2 e^(-8-rho) (about 2 codes at rho = 0)
        set by the frame, beta > 0 learned. That is -beta ln(1 + e^(8+rho) (mu-law distance)^2) less a constant
        per frame, which no softmax sees, and it is bounded (|prior| < 11 beta) and overflows no float16.
        The prediction and the distance are float64: the predictor rounds to float32 differently in torch and a
        runtime, and the mu-law of a prediction amplifies that; the distance's square and log are float32."""
        v = companded(prediction(past, predictor), self.config.vocab_size - 1)       # (..., 1) float64
        distance = (self.code_values - v).float()                                     # (..., V)
        prior = -F.softplus(self.prior_scale) * torch.log(width.float() + distance * distance)
        return v.float(), prior                                                       # (..., 1), (..., V)

    def _prediction_weight(self) -> torch.Tensor:
        """(C, 1): the prediction input's weight on ``_source_filter``'s v, the mu-law value times ln(1 + mu)."""
        return self.prediction_input.weight / math.log1p(self.config.vocab_size - 1)

    def _biases(self, cond: torch.Tensor | None, local: torch.Tensor | None,
                constant: torch.Tensor | None = None) -> torch.Tensor:
        """cond (B,) and frame vectors (B, [T,] L*2C) -> the gate biases of every layer, convolution biases
        included [and a ``constant`` (L*2C,) added to them first, so the export folds the two], (B, [T,] L*2C)."""
        bias = torch.cat([conv.bias for conv in self.convs])  # (L*2C,)
        if constant is not None:
            bias = bias + constant
        if local is not None:
            bias = bias + local
        if self.class_bias is not None:
            glob = self.class_bias(cond)  # (B, L*2C)
            bias = bias + (glob[:, None] if bias.dim() == 3 else glob)
        return bias

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T) int64 levels [, cond (B,), features (B, F, M) frames, F >= ceil(T / hop)] -> logits (B, T, V);
        logits[:, t] predicts x_t from x_<t and the conditions."""
        T, C, k = x.shape[1], self.config.residual_channels, self.config.kernel_size
        local, n = None, len(self.convs) * 2 * C
        if self.local is not None:
            rows = torch.arange(T, device=x.device) // self.feature_spec.hop  # (T,) the frame of each sample
            local = self.frame_vectors(features)[:, rows]  # (B, T, D)
        frame_biases = None if local is None else local[..., :n].float()  # (B, T, L*2C)
        biases = self._biases(cond, frame_biases).split(2 * C, dim=-1)  # L x (B, T, 2C)
        previous = shift_right(x, self.config.vocab_size)  # (B, T)
        h = self.embed(previous)  # (B, T, C)
        prior = 0.0
        if self.config.lpc_order:
            P = self.config.lpc_order + 1
            s = F.pad(self.sample_values[previous], (P - 1, 0))  # (B, P-1+T) s_{t-1}, zeros before
            past = torch.stack([s[:, P - 1 - j:P - 1 - j + T] for j in range(P)], dim=-1)  # (B, T, P) s_{t-1-j}
            v, prior = self._source_filter(past, *self._prior_parts(local))  # (B, T, 1), (B, T, V)
            h = h + F.linear(v, self._prediction_weight(), self.prediction_input.bias)
        gated = []
        for i, d in enumerate(self.config.dilations):
            taps = [F.pad(h, (0, 0, j * d, 0))[:, :T] for j in range(k - 1, 0, -1)]  # x_{t-jd}, zeros before 0
            a = F.linear(torch.cat([*taps, h], dim=-1), self.convs[i].weight)  # (B, T, 2C)
            z = gate(a + (biases[i][:, None] if biases[i].dim() == 2 else biases[i]), dim=-1)  # (B, T, C)
            gated.append(z)
            if i < len(self.residuals):
                h = h + self.residuals[i](z)
        return self.head(self.skip(torch.cat(gated, dim=-1))) + prior  # (B, T, W)

    def step(self, token, pos, state, cond=None, features=None):
        """token (B,) x_{pos-1} or the start symbol, per row; pos (B,) int64, row b at position pos[b]; features
        (B, D): ``frame_vectors`` of the frame of each row's sample. Rows are independent."""
        c, queue = self.config, state["queue"]  # (B, R, C)
        vectors = features
        if c.lpc_order:
            features = features[:, :len(self.convs) * 2 * c.residual_channels].float()  # (B, L*2C) gate biases
        C, L, k, R = c.residual_channels, len(self.convs), c.kernel_size, queue.shape[1]
        lag, size, first = (torch.tensor(v, device=queue.device).view(L, 1, k - 1) for v in zip(*self._taps))
        base = torch.arange(pos.shape[0], device=queue.device).view(1, -1, 1) * R  # (1, B, 1) row b's ring in the flat queue
        read = (pos.view(1, -1, 1) - lag) % size + (first + base)  # (L, B, k-1) flat rows of x_{pos-jd}, layer-major
        # (first + base does not change from step to step: a chunk graph computes it once, outside its loop)
        taps = F.embedding(read, queue.reshape(-1, C)).flatten(2)  # (L, B, (k-1)C): one Gather of the taps
        past = torch.bmm(taps, self._past_weights())  # (L, B, 2C): L products of batch B, not B*L of one row
        past = past.transpose(0, 1).reshape(-1, L * 2 * C)  # (B, L*2C)
        shifts = self._residual_shifts()  # (L, C) s_i
        current = [conv.weight[:, -C:].T for conv in self.convs]  # L x (C, 2C) the current tap's weights
        shift_bias = torch.cat([s @ w for s, w in zip(shifts, current)])  # (L*2C,) s_i's share of the gates
        biases = (past + self._biases(cond, features, shift_bias)).split(2 * C, dim=-1)  # L x (B, 2C)
        new_state, prior = {}, 0.0
        if c.lpc_order:  # h (B, C): layer 0's input; below, layer i's input less s_i
            h, prior, new_state["samples"] = self._step_source_filter(token, state["samples"],
                                                                      *self._prior_parts(vectors))
        else:
            h = self.embed(token)
        inputs, gated = [], []
        for i, w in enumerate(current):
            inputs.append(h)
            z = gate(torch.addmm(biases[i], h, w), dim=-1)  # (B, C)
            gated.append(z)
            if i < len(self.residuals):
                h = torch.addmm(h, z, self.residuals[i].weight.T)  # one Gemm: the residual's bias is in s_{i+1}
        size, first = (torch.tensor(v, device=queue.device) for v in zip(*self._rings))  # (L,) each
        inputs = (torch.cat(inputs, dim=-1) + shifts.flatten()).view(-1, L, C)  # (B, L, C) every layer's x_pos
        write = pos[:, None] % size + first  # (B, L) their rows, per row
        batch = torch.arange(pos.shape[0], device=queue.device)[:, None].expand_as(write)  # (B, L)
        # the one write (a ScatterND of B*L rows of C): it depends through the gates on the taps read above, so
        # it cannot overtake them when in.queue and out.queue are one buffer
        new_state["queue"] = queue.index_put((batch, write), inputs)  # (B, R, C)
        return self.head(self.skip(torch.cat(gated, dim=-1))) + prior, new_state

    def roll(self, token, pos, state, draw, length, cond=None, features=None):
        """``ARModel.roll`` (the step loop, same tokens and state) as one block, laid out for onnxruntime (the chunk
        graph unrolls it): every past tap of the ``length`` elements that was written before the block is read from
        the ring in one Gather and meets its weights in L products of B * length rows; a tap an element of the block
        made joins that element's current-tap product; a gate's two halves are two Gemms (no Split); the biases,
        the frames' parts and the uniforms are split once per block; each layer's ring is written once, its last
        min(length, n_i) inputs in one ScatterND, so the ring is copied once per block, not once per element."""
        c, queue, M = self.config, state["queue"], length                        # queue (B, R, C)
        C, L, k, R = c.residual_channels, len(self.convs), c.kernel_size, queue.shape[1]
        n = L * 2 * C
        # every element's past taps, oldest first per layer: (lag j * d_i, ring length, first row) of ``_taps``
        lag, size, first = (torch.tensor(v, device=queue.device).view(L, 1, 1, k - 1) for v in zip(*self._taps))
        element = torch.arange(M, device=queue.device).view(1, 1, M, 1)
        before = (element < lag).to(queue.dtype).unsqueeze(-1)                   # (L, 1, M, k-1, 1) read from the ring
        base = torch.arange(pos.shape[0], device=queue.device).view(1, -1, 1, 1) * R  # (1, B, 1, 1)
        read = (pos.view(1, -1, 1, 1) + element - lag) % size + (first + base)    # (L, B, M, k-1) flat rows
        taps = F.embedding(read, queue.reshape(-1, C)) * before                   # (L, B, M, k-1, C)
        past = torch.bmm(taps.flatten(3).flatten(1, 2), self._past_weights())     # (L, B*M, 2C)
        past = past.view(L, -1, M, 2 * C).permute(1, 2, 0, 3).reshape(-1, M, n)   # (B, M, L*2C)
        # taps made in the block: element e's newest inside[e][i] = min(k-1, e // d_i) of layer i's
        inside = [[min(k - 1, e // d) for d in c.dilations] for e in range(M)]   # (M, L)
        weights = [conv.weight.T for conv in self.convs]                         # L x (kC, 2C), taps oldest first
        shifts = self._residual_shifts()                                          # (L, C) s_i
        shares = [s @ w.view(k, C, 2 * C) for s, w in zip(shifts, weights)]      # L x (k, 2C) s_i W_j per tap
        constant = torch.stack([torch.cat([shares[i][k - 1 - J:].sum(0) for i, J in enumerate(row)])
                                for row in inside])                              # (M, L*2C) s_i's share of the gates
        if c.lpc_order:  # each element's prior width (B, 1) float32 and predictor (B, order+1), split once per block
            width, predictor = self._prior_parts(features)                         # (B, M, 1), (B, M, order+1)
            width, predictor = (v.flatten(1).split(v.shape[-1], dim=1) for v in (width.float(), predictor))
            features = features[..., :n].float()                                  # (B, M, L*2C) gate biases
            samples = state["samples"]                                            # (B, P) newest first
        gates = self._biases(cond, features)                                      # (B, [M,] L*2C)
        biases = past + constant + (gates[:, None] if gates.dim() == 2 else gates)  # (B, M, L*2C)
        biases = biases.flatten(1).split(C, dim=1)  # M*2L x (B, C): element e's layer i filter at 2(eL + i), gate next
        made, tokens = [[] for _ in range(L)], []  # made[i][e]: layer i's input (less s_i) at element e
        for e in range(M):
            if c.lpc_order:  # the last P decoded samples: s_{pos+e-1} joins them
                h, prior, samples = self._step_source_filter(token, samples, width[e], predictor[e])
            else:
                h, prior = self.embed(token), 0.0
            gated = []
            for i, (d, J) in enumerate(zip(c.dilations, inside[e])):
                x = torch.cat([made[i][e - j * d] for j in range(J, 0, -1)] + [h], dim=-1) if J else h  # (B, (J+1)C)
                w, at = weights[i][(k - 1 - J) * C:], 2 * (e * L + i)             # ((J+1)C, 2C), its biases
                filt = torch.addmm(biases[at], x, w[:, :C])                        # (B, C)
                z = torch.tanh(filt) * torch.sigmoid(torch.addmm(biases[at + 1], x, w[:, C:]))  # (B, C)
                gated.append(z)
                made[i].append(h)
                if i < len(self.residuals):
                    h = torch.addmm(h, z, self.residuals[i].weight.T)
            token = draw(self.head(self.skip(torch.cat(gated, dim=-1))) + prior, e)
            tokens.append(token)
        # the writes: layer i's inputs at the block's last min(M, n_i) elements (earlier ones share their slots)
        keep = [(e, i) for i, (n_i, _) in enumerate(self._rings) for e in range(max(0, M - n_i), M)]
        pick, at, ring, row = (torch.tensor(v, device=queue.device) for v in
                               zip(*[(e * L + i, e, *self._rings[i]) for e, i in keep]))  # (W,) each
        written = torch.cat([made[i][e] for e in range(M) for i in range(L)], dim=-1)  # (B, M*L*C): one Concat
        values = (written.view(-1, M, L, C) + shifts).flatten(1, 2)[:, pick]      # (B, W, C)
        write = (pos[:, None] + at) % ring + row                                  # (B, W)
        batch = torch.arange(pos.shape[0], device=queue.device)[:, None].expand_as(write)
        new_state = {"queue": queue.index_put((batch, write), values)}           # (B, R, C)
        if c.lpc_order:
            new_state["samples"] = samples                                        # (B, P)
        return torch.stack(tokens, dim=1), new_state                              # (B, M)

    def _step_source_filter(self, token, samples, width, predictor):
        """The step's source-filter part: token (B,) x_{pos-1}, samples (B, P) s_{pos-2} .. s_{pos-1-P} ->
        (layer 0's input (B, C), the logits' prior (B, V), the new samples s_{pos-1} .. s_{pos-P}). Layer 0's input
        is one Gemm onto the token's embedding, the prediction input's bias folded into the table."""
        value = F.embedding(token, self.sample_values[:, None])                       # (B, 1) s_{pos-1}: one Gather
        past = torch.cat([value, samples[:, :-1]], dim=1)                             # (B, P)
        v, prior = self._source_filter(past, width, predictor)                        # (B, 1), (B, V)
        table = self.embed.weight + self.prediction_input.bias                        # (V+1, C)
        h = torch.addmm(F.embedding(token, table), v, self._prediction_weight().T)    # (B, C)
        return h, prior, past

    def _residual_shifts(self) -> torch.Tensor:
        """(L, C): s_i, the sum of the residual biases below layer i. The step carries each layer's input less s_i,
        so a residual connection is one Gemm (h + z W^T onto h), and adds s_i back where the input is stored and,
        as a constant, to the gate biases (s_i W_cur^T): one node less per layer, where a batch-1 step goes."""
        zero = torch.zeros(1, self.config.residual_channels, device=self.convs[0].weight.device)  # (new_zeros
        # would export as a ConstantOfShape the optimizer does not fold, and every step would recompute the shifts)
        return torch.cat([zero, torch.stack([r.bias for r in self.residuals]).cumsum(0)]) if self.residuals else zero

    def _past_weights(self) -> torch.Tensor:
        """(L, (k-1)C, 2C): every layer's weights of its past taps, oldest first."""
        C = self.config.residual_channels
        return torch.stack([conv.weight[:, :-C].T for conv in self.convs])


class _ValueInput(nn.Module):
    """Levels (...) int64 -> (..., C): the level's value in [-1, 1] through a linear map, the start symbol
    (id ``levels``) at value 0; 65,536 levels need no 65,536-row table."""

    def __init__(self, levels: int, channels: int):
        super().__init__()
        self.levels = levels
        self.linear = nn.Linear(1, channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        value = torch.where(tokens < self.levels, 2.0 * tokens / (self.levels - 1) - 1.0, 0.0)  # (...)
        return self.linear(value.unsqueeze(-1).float())  # (..., C)
