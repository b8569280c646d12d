// The contract's samplers (docs/contract.md section 7) and its random streams (section 8), as pure functions
// of one row of outputs and one uniform. Every step is arrun's (arrun/sampling.py, arrun/contract/heads/) in
// float64, in the same order: numpy's pairwise sum where arrun sums, a running sum where it takes a cumsum,
// the lowest index on ties. Only Math.exp / log / log1p may differ from numpy's in the last bit (section 9.3).

/** f32(x): the nearest float32, as a number. */
const f32 = Math.fround;

/** numpy's pairwise summation of a[start..start+n) (section 7.2), float64. */
export function pairwiseSum(a, start = 0, n = a.length - start) {
  if (n < 8) {
    let r = 0.0;
    for (let i = 0; i < n; i++) r += a[start + i];
    return r;
  }
  if (n <= 128) {
    const r = [0, 1, 2, 3, 4, 5, 6, 7].map((j) => a[start + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** The largest float64 below t, for a finite t > 0 (numpy's nextafter(t, 0)). */
export function nextBelow(t) {
  BITS.setFloat64(0, t);
  BITS.setBigUint64(0, BITS.getBigUint64(0) - 1n);
  return BITS.getFloat64(0);
}
const BITS = new DataView(new ArrayBuffer(8));

function argmax(x) {
  let best = 0;
  for (let j = 1; j < x.length; j++) if (x[j] > x[best] || (Number.isNaN(x[j]) && !Number.isNaN(x[best]))) best = j;
  return best;
}

function maxOf(x) {
  let m = -Infinity;
  for (let j = 0; j < x.length; j++) m = x[j] > m || Number.isNaN(x[j]) ? x[j] : m;
  return m;
}

/** Indices of x ordered by value descending, equal values by ascending index (a stable argsort of -x). */
function rankDescending(x) {
  return Array.from(x.keys()).sort((a, b) => (x[a] > x[b] ? -1 : x[a] < x[b] ? 1 : a - b));
}

/** x (V) with all but the k largest (ties: lower index) set to -inf; x itself when k <= 0 or k >= V (7.3 step 4). */
export function topKFilter(x, k) {
  if (k <= 0 || k >= x.length) return x;
  const out = new Float64Array(x.length).fill(-Infinity);
  for (const j of rankDescending(x).slice(0, k)) out[j] = x[j];
  return out;
}

/** softmax in float64: e = exp(x - max), e / pairwise sum(e) (arrun.sampling.softmax). */
export function softmax(x) {
  const m = maxOf(x);
  const e = Float64Array.from(x, (v) => Math.exp(v - m));
  const s = pairwiseSum(e);
  return e.map((v) => v / s);
}

/** x (V) keeping the smallest set of most likely entries whose mass reaches p, the rest -inf (7.3 step 5). */
export function topPFilter(x, p) {
  if (p >= 1.0) return x;
  const probs = softmax(x);
  const order = rankDescending(probs);
  let c = 0.0;
  const cum = order.map((j) => (c += probs[j]));
  const threshold = p * cum[cum.length - 1];
  let keep = 1;
  for (const v of cum) if (v < threshold) keep++;
  const out = new Float64Array(x.length).fill(-Infinity);
  for (const j of order.slice(0, keep)) out[j] = x[j];
  return out;
}

/** Inverse CDF (7.4): x (V) values (some -inf, one finite at least), u in [0, 1) -> the first index whose
 * running sum of exp(x - max) exceeds u * total. */
export function sampleCategorical(x, u) {
  const m = maxOf(x);
  const cdf = new Float64Array(x.length);
  let c = 0.0;
  for (let j = 0; j < x.length; j++) cdf[j] = c += Math.exp(x[j] - m);
  const total = cdf[x.length - 1];
  const target = Math.min(u * total, nextBelow(total));
  let count = 0;
  for (let j = 0; j < x.length; j++) if (cdf[j] <= target) count++;
  return count;
}

/** Whether a draw at these options takes a uniform (temperature 0, or below float32's range, is greedy). */
export function drawsUniform({temperature = 1} = {}) {
  return f32(temperature) !== 0;
}

/** The softmax head (7.3): row (V float32 logits), {temperature, topK, topP}, u -> element. u is ignored
 * when greedy (drawsUniform false). */
export function sampleSoftmax(row, {temperature = 1, topK = 0, topP = 1} = {}, u = 0) {
  if (!drawsUniform({temperature})) return argmax(row);
  const T = f32(temperature);
  let x = temperature === 1 ? row : Float64Array.from(row, (l) => f32(l / T));  // float32 values either way
  const overflow = !x.every(Number.isFinite);
  if (overflow) x = new Float64Array(x.length);
  x = topPFilter(topKFilter(x, topK), topP);
  const pick = sampleCategorical(x, u);
  return overflow ? argmax(row) : pick;
}

/** The logistic mixture head (7.5): row (3K float32), K components over V levels, temperature, u -> level. */
export function sampleMixture(row, K, V, temperature = 1, u = 0) {
  const x = Float64Array.from(row);
  const floor = Math.log(1.0 / (V - 1)) - 1.5;
  const w = x.subarray(0, K), mu = x.subarray(K, 2 * K);
  const logS = Float64Array.from(x.subarray(2 * K, 3 * K), (s) => (Number.isNaN(s) ? s : Math.max(s, floor)));
  let m = maxOf(w);
  if (!Number.isFinite(m)) m = 0.0;
  const lse = m + Math.log(pairwiseSum(Float64Array.from(w, (v) => Math.exp(v - m))));
  const logW = Float64Array.from(w, (v) => v - lse);
  const T = f32(temperature);
  let value;
  if (T === 0) {
    value = mu[argmax(logW)];
  } else {
    const weights = softmax(Float64Array.from(logW, (v) => v / T));
    const cum = new Float64Array(K);
    let c = 0.0;
    for (let j = 0; j < K; j++) cum[j] = c += weights[j];
    const U = u * cum[K - 1];
    let k = 0;
    for (let j = 0; j < K; j++) if (cum[j] <= U) k++;
    k = Math.min(k, K - 1);
    const below = k > 0 ? cum[k - 1] : 0.0;
    let r = (U - below) / weights[k];
    if (!Number.isNaN(r)) r = Math.min(Math.max(r, 1e-300), 1 - 2 ** -53);
    value = mu[k] + ((Math.exp(logS[k]) * T) * (Math.log(r) - Math.log1p(-r)));
  }
  const v = Math.floor(((value + 1.0) * (V - 1)) / 2.0 + 0.5);
  return Number.isNaN(v) ? 0 : Math.min(Math.max(v, 0), V - 1);
}

/** One row of the head's outputs -> its element: info.output picks the head (ModelInfo of contract.mjs). */
export function sampleHead(info, row, options, u) {
  if (info.output.kind === 'softmax') return sampleSoftmax(row, options, u);
  return sampleMixture(row, info.output.mixtures, info.vocabSize, options.temperature ?? 1, u);
}

// ---- the random streams (section 8.2): numpy's default_rng([seed, index]).random() ----

const M32 = 0xffffffffn, M64 = (1n << 64n) - 1n, M128 = (1n << 128n) - 1n;
const PCG_MULT = 0x2360ed051fc65da44385df649fccf645n;

/** The uniforms of sequence `index` of a run seeded `seed` (non-negative integers, numbers or BigInts):
 * numpy's SeedSequence([seed, index]) seeding PCG64, doubles from the top 53 bits. random() -> [0, 1). */
export class Stream {
  constructor(seed, index) {
    const words = (n) => {
      n = BigInt(n);
      const out = [n & M32];
      for (n >>= 32n; n > 0n; n >>= 32n) out.push(n & M32);
      return out;
    };
    const entropy = [...words(seed), ...words(index)];
    let hash = 0x43b0d7e5n;
    const hashmix = (v) => {
      v ^= hash;
      hash = (hash * 0x931e8875n) & M32;
      v = (v * hash) & M32;
      return v ^ (v >> 16n);
    };
    const mix = (x, y) => {
      let r = (0xca01f9ddn * x - 0x4973f715n * y) & M32;
      return r ^ (r >> 16n);
    };
    const pool = [0, 1, 2, 3].map((j) => hashmix(j < entropy.length ? entropy[j] : 0n));
    for (let src = 0; src < 4; src++) {
      for (let dst = 0; dst < 4; dst++) if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
    }
    for (let src = 4; src < entropy.length; src++) {
      for (let dst = 0; dst < 4; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src]));
    }
    let h = 0x8b51f9ddn;
    const w = [];
    for (let k = 0; k < 8; k++) {
      let v = pool[k % 4] ^ h;
      h = (h * 0x58f38dedn) & M32;
      v = (v * h) & M32;
      w.push(v ^ (v >> 16n));
    }
    const s = [0, 1, 2, 3].map((j) => w[2 * j] | (w[2 * j + 1] << 32n));
    this.inc = ((((s[2] << 64n) | s[3]) << 1n) | 1n) & M128;
    this.state = this.inc;                                      // 0 * MULT + inc
    this.state = (((this.state + ((s[0] << 64n) | s[1])) & M128) * PCG_MULT + this.inc) & M128;
  }

  next64() {
    this.state = (this.state * PCG_MULT + this.inc) & M128;
    const x = ((this.state >> 64n) ^ this.state) & M64;
    const r = this.state >> 122n;
    return ((x >> r) | (x << ((64n - r) % 64n))) & M64;
  }

  random() {
    return Number(this.next64() >> 11n) * 2 ** -53;
  }
}
