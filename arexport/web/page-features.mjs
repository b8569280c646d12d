// A vocoder's features computed in the page from a WAV, as arrun vocode computes them (docs/contract.md
// sections 11.3-11.6): the clip read as PCM (channels averaged), coded to the model's levels and decoded
// back, then the log-mel analysis of the metadata's `ar.features` spec (11.5), in float64, stored float32.
// Differences from arrun are those of float64 rounding in the FFT (this radix-2 FFT against numpy's
// pocketfft): at most 7.6e-6 on the shipped vocoder's first clip (tests/test_web_page.py).

/** A WAV's bytes -> {data: Float32Array (F * M), frames: F, samples: T}; an Error saying what is wrong. */
export function featuresOfWav(buffer, info) {
  const { samples, rate } = readWav(buffer);
  if (rate !== info.sampleRate) {
    throw new Error(`the clip is at ${rate} Hz and the model at ${info.sampleRate} Hz; resample it first ` +
                    '(arrun vocode resamples), or upload its features .npy');
  }
  const coded = Float64Array.from(samples, (x) => levelValue(codeOf(x, info.vocabSize), info.vocabSize));
  return { ...logMel(coded, info.features), samples: samples.length };
}

/** PCM WAV of 8 (unsigned), 16, 24 or 32-bit samples -> {samples: Float64Array in [-1, 1] (mono), rate}. */
export function readWav(buffer) {
  const view = new DataView(buffer);
  const tag = (at) => String.fromCharCode(...new Uint8Array(buffer, at, 4));
  if (buffer.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('the file is not a WAV (RIFF/WAVE)');
  let format = null;
  for (let at = 12; at + 8 <= buffer.byteLength; at += 8 + view.getUint32(at + 4, true) + (view.getUint32(at + 4, true) % 2)) {
    const size = view.getUint32(at + 4, true);
    if (tag(at) === 'fmt ') {
      format = { code: view.getUint16(at + 8, true), channels: view.getUint16(at + 10, true),
                 rate: view.getUint32(at + 12, true), bits: view.getUint16(at + 22, true) };
    } else if (tag(at) === 'data') {
      if (!format) throw new Error('the WAV has its data before its format chunk');
      if (![1, 0xfffe].includes(format.code) || ![8, 16, 24, 32].includes(format.bits)) {
        throw new Error(`the WAV holds format ${format.code} at ${format.bits} bits; give 8, 16, 24 or 32-bit PCM`);
      }
      const width = format.bits / 8, frame = width * format.channels;
      const count = Math.floor(Math.min(size, buffer.byteLength - at - 8) / frame);
      if (!count) throw new Error('the WAV holds no samples');
      const samples = new Float64Array(count);
      for (let i = 0; i < count; i++) {
        let sum = 0;
        for (let c = 0; c < format.channels; c++) sum += pcmSample(view, at + 8 + i * frame + c * width, format.bits);
        samples[i] = sum / format.channels;
      }
      return { samples, rate: format.rate };
    }
  }
  throw new Error('the WAV has no data chunk');
}

function pcmSample(view, at, bits) {
  if (bits === 8) return (view.getUint8(at) - 128) / 128;
  if (bits === 16) return view.getInt16(at, true) / 32768;
  if (bits === 32) return view.getInt32(at, true) / 2 ** 31;
  const value = view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getInt8(at + 2) << 16);
  return value / 2 ** 23;
}

/** A float sample -> its level: mu-law with mu = V - 1 (11.3), or the 16-bit sample + 32768 (11.4). */
function codeOf(x, levels) {
  if (levels === 65536) return Math.min(32767, Math.max(-32768, roundHalfEven(x * 32768))) + 32768;
  const mu = levels - 1;
  const clipped = Math.min(1, Math.max(-1, x));
  const y = (Math.sign(clipped) * Math.log1p(mu * Math.abs(clipped))) / Math.log1p(mu);
  return Math.floor(((y + 1) / 2) * mu + 0.5);
}

/** A level -> its float value (11.3, 11.4), float64. */
function levelValue(code, levels) {
  if (levels === 65536) return (code - 32768) / 32768;
  const mu = levels - 1;
  const y = (2 * code) / mu - 1;
  return (Math.sign(y) * Math.expm1(Math.abs(y) * Math.log1p(mu))) / mu;
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/** (T,) float64 waveform -> {data: Float32Array (F * M), frames: F = 1 + T // hop}: section 11.5. */
export function logMel(audio, spec) {
  const { n_fft: n, hop, win_length: w, n_mels: M, power, log_floor: floor } = spec;
  const frames = 1 + Math.floor(audio.length / hop);
  const window = new Float64Array(n);
  const left = Math.floor((n - w) / 2);
  for (let i = 0; i < w; i++) window[left + i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / w);
  const bank = melFilterbank(spec);
  const bins = n / 2 + 1;
  const data = new Float32Array(frames * M);
  const re = new Float64Array(n), im = new Float64Array(n), spectrum = new Float64Array(bins);
  for (let f = 0; f < frames; f++) {
    const start = f * hop - n / 2;
    for (let i = 0; i < n; i++) {
      const t = start + i;
      re[i] = t >= 0 && t < audio.length ? audio[t] * window[i] : 0;
      im[i] = 0;
    }
    fft(re, im);
    for (let j = 0; j < bins; j++) spectrum[j] = Math.hypot(re[j], im[j]) ** power;
    for (let m = 0; m < M; m++) {
      let sum = 0;
      for (let j = 0; j < bins; j++) sum += spectrum[j] * bank[m * bins + j];
      data[f * M + m] = Math.log(Math.max(sum, floor));
    }
  }
  return { data, frames };
}

/** (M * (n_fft / 2 + 1)) Slaney mel filterbank with area normalisation (11.5, step 4). */
function melFilterbank({ n_fft: n, sample_rate: rate, n_mels: M, fmin, fmax }) {
  const bins = n / 2 + 1;
  const step = Math.log(6.4) / 27;
  const mel = (hz) => (hz < 1000 ? hz / (200 / 3) : 15 + Math.log(hz / 1000) / step);
  const hz = (m) => (m < 15 ? m * (200 / 3) : 1000 * Math.exp(step * (m - 15)));
  const [low, high] = [mel(fmin), mel(fmax)];
  const edges = Array.from({ length: M + 2 }, (_, i) => hz(low + ((high - low) * i) / (M + 1)));
  const bank = new Float64Array(M * bins);
  for (let m = 0; m < M; m++) {
    const norm = 2 / (edges[m + 2] - edges[m]);
    for (let j = 0; j < bins; j++) {
      const f = (j * rate) / n;
      const rising = (f - edges[m]) / (edges[m + 1] - edges[m]);
      const falling = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
      bank[m * bins + j] = Math.max(0, Math.min(rising, falling)) * norm;
    }
  }
  return bank;
}

/** In-place complex FFT of a power-of-two length (iterative radix 2), or a plain DFT otherwise. */
function fft(re, im) {
  const n = re.length;
  if (n & (n - 1)) return dft(re, im);
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const angle = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const [c, s] = [Math.cos(angle * k), Math.sin(angle * k)];
        const [a, b] = [start + k, start + k + size / 2];
        const [xr, xi] = [re[b] * c - im[b] * s, re[b] * s + im[b] * c];
        re[b] = re[a] - xr; im[b] = im[a] - xi;
        re[a] += xr; im[a] += xi;
      }
    }
  }
  return undefined;
}

function dft(re, im) {
  const n = re.length, outRe = new Float64Array(n), outIm = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    for (let t = 0; t < n; t++) {
      const angle = (-2 * Math.PI * k * t) / n;
      outRe[k] += re[t] * Math.cos(angle) - im[t] * Math.sin(angle);
      outIm[k] += re[t] * Math.sin(angle) + im[t] * Math.cos(angle);
    }
  }
  re.set(outRe);
  im.set(outIm);
}
