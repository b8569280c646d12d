// The audio view of page.mjs: the length in seconds (or, for a vocoder, a features .npy of log-mel frames,
// or a WAV whose features the page computes: page-features.mjs), then the sample played with Web Audio,
// drawn as a waveform and offered as a WAV. Elements decode as docs/contract.md sections 11.3 (mu-law) and
// 11.4 (16-bit linear) say; the WAV is mono 16-bit PCM.

import { featuresOfWav } from './page-features.mjs';

const MAX_SECONDS = 60;

export function audioView(info, { output, field, classField }) {
  const vocoder = Boolean(info.features);
  const rate = info.sampleRate;
  const [classes, conditionOf] = classField(info);
  const fields = [...classes, ...(vocoder
    ? [field('features', `A WAV to resynthesise (${rate} Hz), or its log-mel frames (.npy, frames x ` +
             `${info.features.n_mels}, as arrun sample --features takes)`, { type: 'file', accept: '.wav,.npy', wide: true })]
    : [field('seconds', 'Seconds', { type: 'number', min: 0.01, max: MAX_SECONDS, step: 'any', value: 1 }),
       // a chunk graph samples inside the graph, at temperature 1 only
       ...(info.graph === 'step' ? [field('temperature', 'Temperature', { type: 'number', min: 0, step: 'any', value: 1 })] : [])])];
  const waveform = Object.assign(document.createElement('canvas'), { id: 'waveform', width: 800, height: 120 });
  const actions = document.createElement('p');
  output.replaceChildren(waveform, actions);
  let audioContext = null;

  return {
    fields,
    async request(values) {
      if (vocoder) {
        const file = values.features;
        if (!(file instanceof File) || !file.size) throw new Error('choose a WAV or a features .npy file first');
        const bytes = await file.arrayBuffer();
        if (new TextDecoder('latin1').decode(bytes.slice(0, 4)) === 'RIFF') { // as arrun vocode: the clip's length
          const { samples, ...features } = featuresOfWav(bytes, info);
          window.arPage.features = Array.from(features.data);
          return { batch: 1, length: samples, features, condition: conditionOf(values) };
        }
        const frames = readFeatures(bytes, info.features.n_mels);
        return { batch: 1, length: frames.frames * info.features.hop, features: frames, condition: conditionOf(values) };
      }
      const seconds = Number(values.seconds);
      if (!(seconds > 0 && seconds <= MAX_SECONDS)) throw new Error(`the length must be 0 to ${MAX_SECONDS} seconds`);
      const temperature = Number(values.temperature ?? 1);
      if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new Error('the temperature must be a number >= 0');
      const length = Math.max(1, Math.round(seconds * rate));
      if (info.maxLength && length > info.maxLength) throw new Error(`the model makes at most ${info.maxLength} samples`);
      return { batch: 1, length, temperature, condition: conditionOf(values) };
    },
    start() {
      actions.replaceChildren();
      waveform.getContext('2d').clearRect(0, 0, waveform.width, waveform.height);
    },
    step() {},
    finish(result) {
      const samples = decodeAudio(result.tokens[0], info.vocabSize);
      drawWaveform(waveform, samples);
      const play = Object.assign(document.createElement('button'), { type: 'button', id: 'play', textContent: 'Play' });
      play.addEventListener('click', () => {
        audioContext ??= new AudioContext({ sampleRate: rate });
        const buffer = audioContext.createBuffer(1, samples.length, rate);
        buffer.copyToChannel(samples, 0);
        const source = audioContext.createBufferSource();
        source.buffer = buffer;
        source.connect(audioContext.destination);
        source.start();
      });
      const url = URL.createObjectURL(new Blob([wavBytes(samples, rate, info.vocabSize, result.tokens[0])], { type: 'audio/wav' }));
      const download = Object.assign(document.createElement('a'), { id: 'wav', href: url, download: 'sample.wav',
        textContent: `Download sample.wav (${(samples.length / rate).toFixed(2)} s, ${rate} Hz)` });
      actions.replaceChildren(play, ' ', download);
    },
  };
}

/** Elements -> Float32Array in [-1, 1]: mu-law with mu = V - 1 (11.3), or s / 32768 for V = 65536 (11.4). */
export function decodeAudio(tokens, levels) {
  if (levels === 65536) return Float32Array.from(tokens, (e) => (e - 32768) / 32768);
  const mu = levels - 1;
  const scale = Math.log1p(mu);
  return Float32Array.from(tokens, (c) => {
    const y = (2 * c) / mu - 1;
    return (Math.sign(y) * Math.expm1(Math.abs(y) * scale)) / mu;
  });
}

/** A mono 16-bit PCM WAV: each float32 sample as round-half-even(clip(x, -1, 1) * 32767), the product in
 * float32 as arrun computes it (11.3), or the 16-bit sample itself for V = 65536 (11.4). */
export function wavBytes(samples, rate, levels, tokens) {
  const bytes = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(bytes);
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, 'RIFF'); view.setUint32(4, 36 + 2 * samples.length, true); text(8, 'WAVE');
  text(12, 'fmt '); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, 'data'); view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const value = levels === 65536 ? tokens[i] - 32768 : roundHalfEven(Math.fround(Math.min(1, Math.max(-1, samples[i])) * 32767));
    view.setInt16(44 + 2 * i, value, true);
  }
  return bytes;
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/** A .npy of log-mel frames (F, M) float32 or float64, little-endian, C order -> {data: Float32Array (F*M),
 * frames: F}; an Error saying what is wrong otherwise. */
export function readFeatures(buffer, mels) {
  const bytes = new Uint8Array(buffer);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (bytes.length < 10 || !magic.every((b, i) => bytes[i] === b)) throw new Error('the features file is not a .npy file');
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (/'fortran_order':\s*True/.test(header)) throw new Error('the features .npy is in Fortran order; save it in C order');
  if (!['<f4', '<f8'].includes(descr)) throw new Error(`the features .npy holds ${descr}; save float32 frames`);
  if (!shape || shape.length !== 2 || shape[1] !== mels || shape[0] < 1) {
    throw new Error(`the features .npy has shape (${shape}), and the model takes (frames, ${mels})`);
  }
  const offset = start + headerLength;
  const count = shape[0] * shape[1];
  const data = descr === '<f4' ? new Float32Array(buffer.slice(offset, offset + 4 * count))
                               : Float32Array.from(new Float64Array(buffer.slice(offset, offset + 8 * count)));
  if (data.length !== count) throw new Error('the features .npy is shorter than its shape says');
  return { data, frames: shape[0] };
}

function drawWaveform(canvas, samples) {
  const context = canvas.getContext('2d');
  const middle = canvas.height / 2;
  context.fillStyle = '#f6f6f6';
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = '#2a5db0';
  const per = Math.max(1, Math.floor(samples.length / canvas.width));
  for (let x = 0; x < canvas.width && x * per < samples.length; x++) {
    let low = 1, high = -1;
    for (let i = x * per; i < Math.min(samples.length, (x + 1) * per); i++) {
      low = Math.min(low, samples[i]);
      high = Math.max(high, samples[i]);
    }
    context.fillRect(x, middle - high * middle, 1, Math.max(1, (high - low) * middle));
  }
}
