// The JavaScript runtime of the model contract (docs/contract.md, format version 6): it drives any exported
// step, chunk or prefill graph from the metadata inside the model file alone, in the browser on
// onnxruntime-web and under Node on onnxruntime-node, and samples exactly as arrun does (same uniforms, same
// elements). The caller passes the `ort` namespace in; this module imports no runtime itself.
//
// API (everything a page or a script needs; contract.mjs and sampling.mjs hold the parts it re-exports):
//
//   await readMetadata(bytes, source)    Uint8Array of a .onnx (or .ort) file -> {key: value} strings, the
//                                        file's metadata_props. Throws ContractError for a file that is neither.
//   parseInfo(meta, source)              -> the typed contract (ModelInfo, contract.mjs), read strictly as arrun
//                                        reads it: ContractError naming the first missing or malformed key.
//   await loadModel(ort, bytes, {source, threads = 1, executionProviders, sessionOptions, bindOutputs})
//                                        -> Model, after the metadata and the graph's inputs and outputs are
//                                        checked against each other (ContractError, one line, otherwise).
//   model.meta, model.info               the raw strings and the typed contract; model.session the ort session
//   model.newState(batch, {condition, features})
//                                        -> State: every state tensor at its `init`, by name, for `batch` rows;
//                                        condition: one class id or one per row; features: {data: Float32Array
//                                        (F*M), frames: F} shared by every row, or an array of one per row.
//   state.reset(), state.resetRows(rows, {condition, features})
//                                        every row / the given rows back to `init` (the others run on), the
//                                        rows' condition and features replaced where given.
//   await model.step(state, tokens, position)
//                                        tokens (B) ints, position (B) ints -> Float32Array (B*W) outputs
//                                        (W = V logits or 3K mixture parameters), valid until the next call.
//   await model.chunk(state, tokens, position)
//                                        tokens: B arrays of s ints (s <= step_tokens) -> Float32Array (B*s*W), new.
//   await model.prefill(state, inputs)   inputs: B arrays of ints, row b's inputs from position 0 (start token
//                                        first) -> Float32Array (B*W): each row's output at its last input.
//                                        Rows of different lengths are right-aligned, as arrun's prefill_rows.
//   await model.sampleChunk(state, previous, position, uniforms, n)
//                                        a chunk graph: previous (B) ints, position (B), uniforms Float64Array
//                                        (B*n) -> Int32Array (B*n) elements drawn inside the graph.
//   await model.generate({batch, length, temperature = 1, topK = 0, topP = 1, prompts, condition, features,
//                         seed = 0, indices, uniforms, onStep})
//                                        -> {tokens: B Int32Arrays (prompt + generated), steps, seconds}; length
//                                        defaults as arrun's (an image's H*W, 256 for text, a second of audio,
//                                        all the features describe for a vocoder).
//                                        Row b is sequence i = indices[b] (default b): prompt prompts[i % k] (token
//                                        arrays, or strings: encodeText), uniforms from the
//                                        contract's generator (seed, i) (section 8), or uniforms[b]
//                                        (a Float64Array, one per drawn element) when given. onStep(done, tokens)
//                                        is called after each element (a chunk graph: each call) with the number
//                                        of elements done per row, and awaited.
//
//   Samplers (sampling.mjs): sampleSoftmax(row, options, u), sampleMixture(row, K, V, T, u), sampleCategorical,
//   topKFilter, topPFilter, pairwiseSum, Stream(seed, index) - pure functions of (outputs, uniform), float64,
//   in arrun's order of operations, so the draws are arrun's. encodeText / decodeText map text <-> elements.
//
// Errors: ContractError (a bad file or metadata) and UsageError (a bad call), each one line saying what is
// wrong and what to do.

export { ContractError, UsageError, readMetadata, parseInfo, checkGraph, encodeText, decodeText,
         FORMAT_VERSION } from './contract.mjs';
export { Stream, sampleSoftmax, sampleMixture, sampleCategorical, topKFilter, topPFilter, pairwiseSum,
         sampleHead } from './sampling.mjs';

import { ContractError, UsageError, readMetadata, parseInfo, checkGraph, encodeText } from './contract.mjs';
import { Stream, drawsUniform, sampleHead } from './sampling.mjs';

export const CHUNK = 1024;  // elements per call of a chunk graph, as arrun's generate

/** bytes of a .onnx file -> Model, the metadata read strictly and the graph checked against it.
 * options: source (the name messages use), threads (intra-op, default 1), executionProviders (default the
 * ort's own: 'cpu' under Node, 'wasm' in the browser), sessionOptions (merged into ort's), bindOutputs
 * (true: state and outputs are written into preallocated buffers, in place where the metadata says
 * `in_place`; false: every call returns new tensors, whose references are swapped). bindOutputs defaults to
 * true on onnxruntime-node only: onnxruntime-web 1.31.1 (wasm) fills preallocated outputs wrongly (other
 * elements than arrun's from the first step), while the tensors it returns give arrun's elements. */
export async function loadModel(ort, bytes, options = {}) {
  const {source = 'the model', threads = 1, executionProviders, sessionOptions = {}} = options;
  const bindOutputs = options.bindOutputs ?? Boolean(ort.env?.versions?.node);
  bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const meta = await readMetadata(bytes, source);
  const info = parseInfo(meta, source);
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
      ...(executionProviders ? {executionProviders} : {}),
      extra: {session: {intra_op: {allow_spinning: '0'}, inter_op: {allow_spinning: '0'}}},
      ...sessionOptions,
    });
  } catch (e) {
    throw new ContractError(`${source} is not a loadable ONNX model (${String(e?.message ?? e).split('\n')[0].slice(0, 300)}); ` +
                            're-export it with `arexport onnx`');
  }
  checkGraph(session, info, source);
  return new Model(ort, session, meta, info, {source, bindOutputs});
}

/** The state of `batch` rows of one model, by name: every tensor of `ar.state` at its `init`; one buffer for
 * an `in_place` state, two (alternating input and output) for the others. Also each row's condition and
 * features (a vocoder's frames). */
export class State {
  constructor(model, batch, {condition, features} = {}) {
    const {ort, info} = model;
    if (!Number.isInteger(batch) || batch < 1) throw new UsageError(`the batch must be an integer >= 1, got ${batch}`);
    this.model = model;
    this.batch = batch;
    this.parity = 0;
    // sets[p][i]: state i's input tensor at parity p; the output goes to sets[1 - p][i] (the same in place)
    this.sets = [[], []];
    for (const spec of info.state) {
      const dims = [batch, ...spec.shape];
      const size = dims.reduce((a, d) => a * d, 1);
      const make = () => new ort.Tensor(spec.dtype, filled(spec.dtype, size, spec.init), dims);
      const pair = spec.inPlace || !model.bindOutputs ? [make()] : [make(), make()];
      this.sets[0].push(pair[0]);
      this.sets[1].push(pair[pair.length - 1]);
    }
    this.condition = new BigInt64Array(batch);
    this.setCondition(condition);
    this.features = null;  // B rows of {data: Float32Array (F*M), frames: F}
    if (features) this.setFeatures(features);
  }

  /** One class id, or one per row; required (and only allowed) when the model is conditional, unless the
   * model declares an unconditioned id (`ar.condition.unconditioned`): then an absent condition is that id. */
  setCondition(condition, rows = null) {
    const {numClasses, unconditioned} = this.model.info;
    if (condition === undefined || condition === null) {
      if (!numClasses || rows !== null) return;
      if (unconditioned === null) {
        throw new UsageError(`this model is conditioned on ${numClasses} classes; pass condition 0..${numClasses - 1}`);
      }
      condition = unconditioned;
    }
    if (!numClasses) throw new UsageError('this model is unconditional; drop condition');
    const targets = rows ?? [...Array(this.batch).keys()];
    const values = typeof condition === 'number' ? targets.map(() => condition) : Array.from(condition);
    if (values.length !== targets.length) throw new UsageError(`condition needs one class per row (${targets.length}), got ${values.length}`);
    this.condition = BigInt64Array.from(this.condition);  // a new array: the old one may be in a call
    for (const [j, c] of values.entries()) {
      if (!Number.isInteger(c) || c < 0 || c >= numClasses) throw new UsageError(`condition ${c} is out of range; use 0..${numClasses - 1}`);
      this.condition[targets[j]] = BigInt(c);
    }
  }

  /** {data: Float32Array (F*M), frames: F} for every row, or one per row (a vocoder's log-mel frames). */
  setFeatures(features, rows = null) {
    const spec = this.model.info.features;
    if (!spec) throw new UsageError('this model is not a vocoder and takes no features; drop features');
    const targets = rows ?? [...Array(this.batch).keys()];
    const list = Array.isArray(features) ? features : targets.map(() => features);
    this.features ??= Array(this.batch).fill(null);
    for (const [j, f] of list.entries()) {
      if (!(f?.data instanceof Float32Array) || !Number.isInteger(f.frames) || f.frames < 1 || f.data.length !== f.frames * spec.n_mels) {
        throw new UsageError(`features must be {data: Float32Array of frames * ${spec.n_mels}, frames}; compute them as section 11.5 says`);
      }
      this.features[targets[j]] = f;
    }
  }

  /** Every row back to the initial state (its condition and features kept). */
  reset() {
    this.parity = 0;
    for (const [i, spec] of this.model.info.state.entries()) fillRows(this.sets[0][i], spec.init, null);
  }

  /** Rows (array of row indices) back to the initial state; the other rows run on. */
  resetRows(rows, {condition, features} = {}) {
    for (const [i, spec] of this.model.info.state.entries()) fillRows(this.sets[this.parity][i], spec.init, rows);
    if (condition !== undefined) this.setCondition(condition, rows);
    if (features !== undefined) this.setFeatures(features, rows);
  }
}

/** A loaded model: model.meta (the strings), model.info (the typed contract), model.session. */
export class Model {
  constructor(ort, session, meta, info, {source, bindOutputs}) {
    Object.assign(this, {ort, session, meta, info, source, bindOutputs});
    this.width = info.outputWidth;
  }

  newState(batch, options = {}) {
    return new State(this, batch, options);
  }

  /** tokens (B) ints, each row's element at position - 1; position (B) ints -> Float32Array (B*W), the
   * outputs at each row's position, valid until the next call. */
  async step(state, tokens, position) {
    this.#needGraph('step');
    const B = state.batch;
    if (this.info.stepTokens > 1) return this.chunk(state, Array.from(tokens, (t) => [t]), position);
    state.logits ??= new Float32Array(B * this.width);
    return this.#call(state, ints(tokens, B, 'tokens'), [B], position, state.logits, [B, this.width]);
  }

  /** tokens: B arrays of s ints (1 <= s <= step_tokens), row b's elements at position[b]-1 .. -> Float32Array
   * (B*s*W), a new array: the outputs at positions position[b] .. position[b]+s-1. */
  async chunk(state, tokens, position) {
    this.#needGraph('step');
    const B = state.batch, s = tokens[0]?.length ?? 0, S = this.info.stepTokens;
    if (tokens.length !== B || !tokens.every((row) => row.length === s) || s < 1 || (s > 1 && s > S)) {
      throw new UsageError(`a chunk takes ${B} rows of 1..${S} elements each, all of one length`);
    }
    const flat = ints(tokens.flatMap((row) => Array.from(row)), B * s, 'tokens');
    const out = new Float32Array(B * s * this.width);
    const dims = S > 1 ? [B, s] : [B];
    return this.#call(state, flat, dims, position, out, S > 1 ? [B, s, this.width] : [B, this.width]);
  }

  /** inputs: B arrays of ints (row b's inputs from position 0, the start token first) -> Float32Array (B*W),
   * each row's outputs at its last input, a new array. Rows of different lengths are right-aligned as arrun's
   * prefill_rows does (a row starts, reset, at call step N - n_b and idles at position 0 on the start token
   * before), in calls of up to step_tokens elements that never straddle a row's start. */
  async prefill(state, inputs) {
    const B = state.batch, S = this.info.stepTokens;
    const lengths = inputs.map((x) => x.length);
    if (lengths.length !== B || Math.min(...lengths) < 1) {
      throw new UsageError(`prefill takes one non-empty input per row (${B}), got ${lengths.length}`);
    }
    const N = Math.max(...lengths);
    const start = lengths.map((n) => N - n);
    const padded = inputs.map((x, b) => [...Array(start[b]).fill(this.info.startToken), ...Array.from(x)]);
    const cuts = [...new Set([...start, N])].sort((a, b) => a - b);
    let out = null;
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [a, e] = [cuts[c], cuts[c + 1]];
      if (a > 0) state.resetRows(start.flatMap((s0, b) => (s0 === a ? [b] : [])));
      for (let i = a; i < e; i += S) {
        const s = Math.min(S, e - i);
        const position = start.map((s0) => (s0 <= i ? i - s0 : 0));
        if (S > 1) {
          const chunk = await this.chunk(state, padded.map((row) => row.slice(i, i + s)), position);
          out = new Float32Array(B * this.width);
          for (let b = 0; b < B; b++) out.set(chunk.subarray((b * s + s - 1) * this.width, (b * s + s) * this.width), b * this.width);
        } else {
          out = await this.step(state, padded.map((row) => row[i]), position);
        }
      }
    }
    return Float32Array.from(out);
  }

  /** A chunk graph: previous (B) each row's element at position - 1, position (B), uniforms Float64Array
   * (B*n) -> Int32Array (B*n), row b's n elements drawn in the graph at position[b] .. position[b]+n-1. */
  async sampleChunk(state, previous, position, uniforms, n) {
    this.#needGraph('chunk');
    const B = state.batch, {ort, info} = this;
    if (!(uniforms instanceof Float64Array) || uniforms.length !== B * n || n < 1) {
      throw new UsageError(`uniforms must be a Float64Array of ${B} rows * ${n} elements`);
    }
    const pos = positions(position, B);
    const feeds = this.#feeds(state, ints(previous, B, 'previous'), [B], pos);
    feeds.uniforms = new ort.Tensor('float64', uniforms, [B, n]);
    if (info.features) {  // row b's frames from position[b] // hop, the last one repeated past their end
      const {hop, n_mels: M} = info.features;
      const first = Array.from(pos, (p) => Math.floor(Number(p) / hop));
      const F = Math.max(...Array.from(pos, (p, b) => Math.floor((Number(p) + n - 1) / hop) - first[b])) + 1;
      const frames = new Float32Array(B * F * M);
      for (let b = 0; b < B; b++) {
        const f = this.#rowFeatures(state, b);
        for (let j = 0; j < F; j++) {
          const at = Math.min(first[b] + j, f.frames - 1) * M;
          frames.set(f.data.subarray(at, at + M), (b * F + j) * M);
        }
      }
      feeds.features = new ort.Tensor('float32', frames, [B, F, M]);
    }
    const tokens = new BigInt64Array(B * n);
    const results = await this.#run(state, feeds, 'tokens', new ort.Tensor('int64', tokens, [B, n]));
    return Int32Array.from(results.tokens.data, Number);
  }

  /** Sample `batch` sequences (module comment): prompt, then `length` elements each, row b from its own
   * uniforms. -> {tokens: B Int32Arrays (row b's prompt, then its samples), steps, seconds}. */
  async generate(options) {
    const {batch, length, temperature = 1, topK = 0, topP = 1, prompts = [[]], condition, features, seed = 0,
           indices, uniforms, onStep} = options;
    const info = this.info, B = batch;
    const sampling = checkSampling(info, {temperature, topK, topP});
    const rows = [...Array(B).keys()].map((b) => promptTokens(info, prompts[(indices ? indices[b] : b) % prompts.length]));
    const P = Math.max(...rows.map((r) => r.length));
    if (info.graph === 'chunk' && P) throw new UsageError('a chunk graph samples from the start of a sequence and takes no prompt; drop the prompts, or sample with the step graph');
    if (info.graph === 'chunk' && (temperature !== 1 || topK || topP !== 1)) {
      throw new UsageError('a chunk graph samples at temperature 1 from the full distribution; drop temperature, topK and topP, or sample with the step graph');
    }
    const L = length ?? defaultLength(info, P, features);
    if (!Number.isInteger(L) || L < 1 || (info.maxLength && P + L > info.maxLength)) {
      throw new UsageError(`length must be 1..${info.maxLength ? info.maxLength - P : 'any'} (the prompt takes ${P}), got ${L}`);
    }
    const draws = [...Array(B).keys()].map((b) => uniformSource(uniforms, seed, indices ? indices[b] : b, b));
    const state = this.newState(B, {condition, features});
    const out = rows.map((r) => { const t = new Int32Array(r.length + L); t.set(r); return t; });
    const started = performance.now();
    if (info.graph === 'chunk') {
      let previous = Array(B).fill(info.startToken);
      for (let t = 0; t < L; t += CHUNK) {
        const n = Math.min(CHUNK, L - t);
        const u = new Float64Array(B * n);
        for (let b = 0; b < B; b++) for (let j = 0; j < n; j++) u[b * n + j] = draws[b]();
        const tokens = await this.sampleChunk(state, previous, Array(B).fill(t), u, n);
        for (let b = 0; b < B; b++) out[b].set(tokens.subarray(b * n, (b + 1) * n), t);
        previous = out.map((row) => row[t + n - 1]);
        if (onStep) await onStep(t + n, out);
      }
    } else {
      let outputs = await this.prefill(state, rows.map((r) => [info.startToken, ...r]));
      const position = rows.map((r) => r.length);
      for (let t = 0; t < L; t++) {
        if (t > 0) {
          for (let b = 0; b < B; b++) position[b] += 1;
          outputs = await this.step(state, out.map((row, b) => row[rows[b].length + t - 1]), position);
        }
        for (let b = 0; b < B; b++) {
          const u = drawsUniform(sampling) ? draws[b]() : 0;
          out[b][rows[b].length + t] = sampleHead(info, outputs.subarray(b * this.width, (b + 1) * this.width), sampling, u);
        }
        if (onStep) await onStep(t + 1, out);
      }
    }
    return {tokens: out, steps: P + L, seconds: (performance.now() - started) / 1000};
  }

  #needGraph(kind) {
    if (this.info.graph !== kind) {
      throw new UsageError(`${this.source} is a ${this.info.graph} graph and this call needs the ${kind} graph; ` +
                           `export it with \`arexport onnx CHECKPOINT_DIR --${kind}-graph\``);
    }
  }

  #rowFeatures(state, b) {
    const f = state.features?.[b];
    if (!f) throw new UsageError('this model is a vocoder: give the features it turns into audio (newState(batch, {features}))');
    return f;
  }

  #feeds(state, tokens, tokenDims, position) {
    const {ort, info} = this, B = state.batch;
    const feeds = {input_ids: new ort.Tensor('int64', tokens, tokenDims)};
    if (info.usesPosition) feeds.position = new ort.Tensor('int64', position, [B]);
    if (info.numClasses) feeds.condition = new ort.Tensor('int64', state.condition, [B]);
    for (const [i, spec] of info.state.entries()) feeds[spec.input] = state.sets[state.parity][i];
    return feeds;
  }

  async #call(state, tokens, tokenDims, position, out, outDims) {
    const {ort, info} = this, B = state.batch;
    const pos = positions(position, B);
    const feeds = this.#feeds(state, tokens, tokenDims, pos);
    if (info.features) {  // (B, M): row b's frame of its position
      const M = info.features.n_mels, frame = new Float32Array(B * M);
      for (let b = 0; b < B; b++) {
        const f = this.#rowFeatures(state, b), index = Math.floor(Number(pos[b]) / info.features.hop);
        if (index >= f.frames) throw new UsageError(`position ${pos[b]} is past the ${f.frames} frames of row ${b}'s features`);
        frame.set(f.data.subarray(index * M, (index + 1) * M), b * M);
      }
      feeds.features = new ort.Tensor('float32', frame, [B, M]);
    }
    const results = await this.#run(state, feeds, info.outputName, new ort.Tensor('float32', out, outDims));
    const data = results[info.outputName].data;
    if (data !== out && (data.buffer !== out.buffer || data.byteOffset !== out.byteOffset)) out.set(data);
    return out;
  }

  /** Run with the state's next buffers as outputs (bound), or take the returned tensors (not bound). */
  async #run(state, feeds, outputName, outTensor) {
    const {info} = this;
    const next = 1 - state.parity;
    let results;
    if (this.bindOutputs) {
      const fetches = {[outputName]: outTensor};
      for (const [i, spec] of info.state.entries()) fetches[spec.output] = state.sets[next][i];
      results = await this.session.run(feeds, fetches);
    } else {
      results = await this.session.run(feeds);
      for (const [i, spec] of info.state.entries()) state.sets[next][i] = results[spec.output];
    }
    state.parity = next;
    return results;
  }
}

function checkSampling(info, {temperature, topK, topP}) {
  if (!(temperature >= 0 && temperature < Infinity)) throw new UsageError(`temperature must be >= 0 and finite (0 = greedy), got ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new UsageError(`topK must be an integer >= 0 (0 = no limit), got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new UsageError(`topP must be in (0, 1] (1 = no limit), got ${topP}`);
  if (info.output.kind !== 'softmax' && (topK || topP < 1)) {
    throw new UsageError('topK and topP rank the levels of a softmax head; this model outputs a mixture of logistics: use temperature alone');
  }
  return {temperature, topK, topP};
}

function promptTokens(info, prompt) {
  if (prompt === undefined || prompt === null || prompt === '') return [];
  if (!['text', 'utf8'].includes(info.dataKind) && prompt.length) throw new UsageError(`a prompt is for text models and this one generates ${info.dataKind}; drop it`);
  const tokens = typeof prompt === 'string' ? encodeText(info, prompt) : Array.from(prompt);
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0 || t >= info.vocabSize) throw new UsageError(`prompt element ${t} is not in 0..${info.vocabSize - 1}`);
  }
  return tokens;
}

function defaultLength(info, P, features) {
  if (info.maxLength) return info.maxLength - P;
  if (info.features) return (Array.isArray(features) ? features[0] : features)?.frames * info.features.hop;
  return ['text', 'utf8'].includes(info.dataKind) ? 256 : info.sampleRate;
}

/** Row b's uniforms: uniforms[b] in order (a Float64Array), or the contract's stream (seed, index). */
function uniformSource(uniforms, seed, index, b) {
  if (!uniforms) {
    const stream = new Stream(seed, index);
    return () => stream.random();
  }
  const row = uniforms[b];
  let i = 0;
  return () => {
    if (!row || i >= row.length) throw new UsageError(`uniforms[${b}] ran out after ${i} draws; give one per sampled element`);
    return row[i++];
  };
}

/** position (B) integers -> BigInt64Array; UsageError unless one per row. */
function positions(position, B) {
  if (position instanceof BigInt64Array && position.length === B) return position;
  if (position?.length !== B || !Array.from(position).every((p) => Number.isInteger(Number(p)) && Number(p) >= 0)) {
    throw new UsageError(`position must hold one position per row, ${B} integers >= 0; pass Array(${B}).fill(t) for rows all at t`);
  }
  return BigInt64Array.from(position, (p) => BigInt(p));
}

function ints(values, n, what) {
  if (values?.length !== n) throw new UsageError(`${what} must hold ${n} elements, got ${values?.length}`);
  return BigInt64Array.from(values, (v) => BigInt(v));
}

/** A typed array of `size` elements of `dtype` equal to `init` (float16: binary16 bit patterns). */
function filled(dtype, size, init) {
  if (dtype === 'float16') return new Uint16Array(size).fill(halfBits(init));
  return new (dtype === 'float64' ? Float64Array : Float32Array)(size).fill(init);
}

/** Rows (null: all) of a state tensor to `init`. */
function fillRows(tensor, init, rows) {
  const data = tensor.data, value = tensor.type === 'float16' ? halfBits(init) : init;
  if (rows === null) { data.fill(value); return; }
  const per = data.length / tensor.dims[0];
  for (const r of rows) data.fill(value, r * per, (r + 1) * per);
}

/** x -> its IEEE binary16 bit pattern, rounded to nearest even. */
function halfBits(x) {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000, exp = (u >>> 23) & 0xff, mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000, shift = 14 - e, half = 1 << (shift - 1);
    let h = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}
