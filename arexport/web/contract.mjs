// The contract read from the file: metadata_props out of the ONNX protobuf (or the ORT flatbuffer, through
// ortmeta.mjs), parsed strictly into a typed object as arrun/contract/schema.py does, and the graph's inputs
// and outputs checked against it as arrun/session.py does. Messages are arrun's, one line each.

export const FORMAT_VERSION = 6;
export const READS_VERSIONS = [6];
const MAX_VOCAB = 2 ** 24, MAX_LENGTH = 2 ** 31, MAX_CLASSES = 2 ** 20, MAX_STATE_BYTES = 2 ** 30;
const MAX_MIXTURES = 2 ** 24, MAX_IMAGE_SIDE = 4096, MAX_SAMPLE_RATE = 1_000_000;
const GRAPH_IO = {  // stateful: state and position; sequence: (B, T) inputs; samples: uniforms in, tokens out
  step: {stateful: true, sequence: false, samples: false},
  full: {stateful: false, sequence: true, samples: false},
  chunk: {stateful: true, sequence: false, samples: true},
};
const PRECISIONS = ['fp32', 'fp16', 'int8'];
const DTYPE_BYTES = {float32: 4, float16: 2, float64: 8};
const DATA_KINDS = ['image', 'text', 'utf8', 'audio'];
const FEATURE_FIELDS = {kind: 'str', sample_rate: 'int', n_fft: 'int', hop: 'int', win_length: 'int', window: 'str',
                        n_mels: 'int', fmin: 'float', fmax: 'float', power: 'float', log_floor: 'float'};
const BUILT_IN_DATA_KEYS = new Set(['ar.data.kind', 'ar.data.image_shape', 'ar.data.name', 'ar.data.alphabet',
                                    'ar.data.sample_rate']);

/** A model file this runtime cannot run: missing or malformed metadata, another format version, a graph
 * that disagrees with its metadata. The message is one line saying what to do. */
export class ContractError extends Error { name = 'ContractError'; }

/** A call that does not fit the model (a bad option, a position that is not one per row). */
export class UsageError extends Error { name = 'UsageError'; }

// ---- metadata_props from the file's bytes ----

/** bytes (Uint8Array of a .onnx or .ort file) -> {key: value}. ORT files (file identifier "ORTM" at bytes
 * 4..8) are read by ortmeta.mjs where it is present; anything else is read as an ONNX ModelProto. */
export async function readMetadata(bytes, source = 'the model') {
  bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (bytes.length >= 8 && String.fromCharCode(...bytes.subarray(4, 8)) === 'ORTM') {
    let ortmeta;
    try {
      ortmeta = await import('./ortmeta.mjs');
    } catch {
      throw new ContractError(`${source} is an ORT file and this runtime has no reader for it (ortmeta.mjs); ` +
                              'give the .onnx file');
    }
    try {
      return ortmeta.readOrtMetadata(bytes);
    } catch (e) {
      throw new ContractError(`${source}: ${e.message}`);
    }
  }
  return readOnnxMetadata(bytes, source);
}

/** The metadata_props (ModelProto field 14: StringStringEntryProto {1: key, 2: value}) of an ONNX file;
 * every other top-level field is skipped by its wire type without being decoded. */
export function readOnnxMetadata(bytes, source = 'the model') {
  const meta = {};
  const text = new TextDecoder('utf-8', {fatal: true});
  const bad = (why) => new ContractError(`${source} is not a loadable ONNX model (${why}); ` +
                                         're-export it with `arexport onnx`');
  const fields = (start, end, visit) => {
    let i = start;
    const varint = () => {
      let value = 0, scale = 1;
      for (;;) {
        if (i >= end) throw bad('truncated varint');
        const b = bytes[i++];
        value += (b & 0x7f) * scale;
        if (b < 0x80) return value;
        scale *= 128;
        if (scale > 2 ** 63) throw bad('varint too long');
      }
    };
    while (i < end) {
      const tag = varint(), wire = tag % 8, number = Math.floor(tag / 8);
      if (wire === 0) varint();
      else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else if (wire === 2) {
        const length = varint();
        if (i + length > end) throw bad('a field runs past the end of the file');
        visit(number, i, i + length);
        i += length;
      } else throw bad(`wire type ${wire}`);
      if (i > end) throw bad('a field runs past the end of the file');
    }
  };
  let sawGraph = false;
  fields(0, bytes.length, (number, start, end) => {
    if (number === 7) sawGraph = true;
    if (number !== 14) return;
    let key = null, value = '';
    fields(start, end, (n, s, e) => {
      try {
        if (n === 1) key = text.decode(bytes.subarray(s, e));
        if (n === 2) value = text.decode(bytes.subarray(s, e));
      } catch { throw bad('a metadata string is not UTF-8'); }
    });
    if (key !== null) meta[key] = value;
  });
  if (!sawGraph) throw bad('no graph');
  return meta;
}

// ---- the typed contract ----

/** {key: value} -> ModelInfo, strictly: ContractError naming the first missing or malformed key, a format
 * version other than 6, or a cross-field rule broken (docs/contract.md sections 2 and 3). */
export function parseInfo(meta, source = 'the model') {
  const get = (key) => {
    if (!Object.prototype.hasOwnProperty.call(meta, key)) {
      throw new ContractError(`'${key}' does not exist in the metadata of ${source}; export it with \`arexport onnx\``);
    }
    return meta[key];
  };
  const parse = (key, convert) => {
    const value = get(key);
    try {
      return convert(value);
    } catch (e) {
      if (e instanceof ContractError) throw e;
      throw new ContractError(`metadata '${key}' of ${source} is malformed (${String(e.message).slice(0, 200)}); ` +
                              're-export it with `arexport onnx`');
    }
  };
  const version = parse('ar.format_version', int);
  if (!READS_VERSIONS.includes(version)) {
    throw new ContractError(`${source} has format version ${version}, this runtime reads version ` +
                            `${READS_VERSIONS.join(', ')}; re-export it with this version's arexport (or upgrade the runtime)`);
  }
  const vocabSize = parse('ar.vocab_size', ranged(1, MAX_VOCAB));
  const info = {
    formatVersion: version,
    family: get('ar.family'),
    graph: parse('ar.graph', choice(Object.keys(GRAPH_IO))),
    dataKind: parse('ar.data.kind', name),
    vocabSize,
    startToken: parse('ar.start_token', int),
    maxLength: parse('ar.max_length', ranged(0, MAX_LENGTH)),
    state: parse('ar.state', stateSpecs),
    window: parse('ar.window', ranged(0, MAX_LENGTH)),
    receptiveField: parse('ar.receptive_field', ranged(0, MAX_LENGTH)),
    stepTokens: parse('ar.step_tokens', ranged(1, MAX_LENGTH)),
    dataName: get('ar.data.name'),
    features: parse('ar.features', (s) => (s ? featureSpec(s) : null)),
    imageShape: parse('ar.data.image_shape', (s) => jsonOf(s, 'list').map(jsonInt)),
    alphabet: parse('ar.data.alphabet', (s) => jsonOf(s, 'str')),
    sampleRate: parse('ar.data.sample_rate', int),
    kindFields: kindFields(meta),
    numClasses: parse('ar.condition.num_classes', ranged(0, MAX_CLASSES)),
    classNames: parse('ar.condition.class_names', (s) => jsonOf(s, 'list').map(jsonText)),
    unconditioned: 'ar.condition.unconditioned' in meta ? parse('ar.condition.unconditioned', int) : null,  // optional
    usesPosition: parse('ar.uses_position', (s) => ({0: false, 1: true})[s] ?? fail(`${quote(s)} is not 0 or 1`)),
    bitsPerDim: parse('ar.bits_per_dim', pyFloat),
    bitsSplit: get('ar.bits_split'),
    opset: parse('ar.opset', int),
    minOnnxruntime: get('ar.min_onnxruntime'),
    producer: parse('ar.producer', (s) => jsonOf(s, 'dict')),
    precision: parse('ar.precision', choice(PRECISIONS)),
    sourceSha256: get('ar.source_sha256'),
    gate: parse('ar.precision.gate', (s) => jsonOf(s, 'dict')),
    output: parse('ar.output', (s) => headSpec(jsonOf(s, 'dict'), vocabSize)),
  };
  info.outputName = info.output.kind === 'softmax' ? 'logits' : 'mixture';
  info.outputWidth = info.output.kind === 'softmax' ? vocabSize : 3 * info.output.mixtures;
  info.io = GRAPH_IO[info.graph];
  validate(info, source);
  return info;
}

function validate(info, source) {
  const problems = [];
  const odd = Object.keys(info.kindFields).filter((n) => !isIdentifier(n) || BUILT_IN_DATA_KEYS.has(`ar.data.${n}`));
  if (odd.length) problems.push(`the data kind's own fields ${odd} need identifier names other than the built-in ar.data keys`);
  if (info.classNames.length && info.classNames.length !== info.numClasses) {
    problems.push('class names and number of classes disagree');
  }
  if (info.unconditioned !== null && !(info.unconditioned >= 0 && info.unconditioned < info.numClasses)) {
    problems.push(`the unconditioned class ${info.unconditioned} is not one of the ${info.numClasses} classes`);
  }
  if (info.io.stateful && !info.state.length) problems.push(`a ${info.graph} graph needs a state spec`);
  if (info.io.samples && info.output.kind !== 'softmax') problems.push(`a ${info.graph} graph samples a softmax head only`);
  if (info.io.samples && info.stepTokens !== 1) problems.push(`a ${info.graph} graph rolls one element per iteration`);
  if (info.features && info.features.sample_rate !== info.sampleRate) {
    problems.push(`the features are analysed at ${info.features.sample_rate} Hz, the audio is ${info.sampleRate} Hz`);
  }
  if (info.window && info.stepTokens > info.window) {
    problems.push(`a step takes up to ${info.stepTokens} elements but the window holds ${info.window}`);
  }
  if ((info.precision === 'fp32') === Boolean(info.sourceSha256)) {
    problems.push(`a ${info.precision} graph ${info.sourceSha256 ? 'has' : 'lacks'} a source hash`);
  }
  if (!(info.startToken >= 0 && info.startToken <= info.vocabSize)) {
    problems.push(`the start token ${info.startToken} is outside 0..${info.vocabSize}`);
  }
  const stateBytes = info.state.reduce((sum, s) => sum + s.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[s.dtype], 0);
  if (stateBytes > MAX_STATE_BYTES) {
    problems.push(`the state takes ${(stateBytes / 2 ** 30).toFixed(1)} GiB per sequence, more than the 1 GiB a runtime allocates`);
  }
  if (problems.length) {
    throw new ContractError(`inconsistent metadata in ${source}: ${problems.join('; ')}; re-export it with \`arexport onnx\``);
  }
  if (!DATA_KINDS.includes(info.dataKind)) {
    throw new ContractError(`metadata 'ar.data.kind' of ${source} is not usable here (no data kind ` +
                            `${quote(info.dataKind)}; this runtime knows ${DATA_KINDS.join(', ')})`);
  }
  const kind = dataKindProblem(info);
  if (kind) throw new ContractError(`inconsistent metadata in ${source}: ${kind}; re-export it with \`arexport onnx\``);
}

function dataKindProblem(info) {
  if (info.dataKind === 'image') {
    const shape = info.imageShape;
    if (shape.length !== 2 || !shape.every((d) => d > 0 && d <= MAX_IMAGE_SIDE)) {
      return `an image model needs a 2-D image shape of sizes 1..${MAX_IMAGE_SIDE}, not [${shape.join(', ')}]`;
    }
  } else if (info.dataKind === 'text') {
    const points = [...info.alphabet];
    if (points.length !== info.vocabSize) return `the alphabet has ${points.length} characters for ${info.vocabSize} tokens`;
    if (new Set(points).size !== points.length) return 'the alphabet repeats a character';
  } else if (info.dataKind === 'utf8') {
    if (info.vocabSize !== 256) return `a utf8 model has 256 levels, not ${info.vocabSize}`;
  } else if (!(info.sampleRate > 0 && info.sampleRate <= MAX_SAMPLE_RATE)) {
    return `an audio model needs a sample rate of 1..${MAX_SAMPLE_RATE} Hz, not ${info.sampleRate}`;
  }
  return null;
}

// ---- the graph against the metadata (section 4.4) ----

/** The graph's input and output names -> what the metadata promises; names, then dtypes and fixed
 * dimensions where the session reports them (onnxruntime-web/node >= 1.21: inputMetadata). */
export function expectedIO(info) {
  const rank = info.io.sequence || info.stepTokens > 1 ? 2 : 1;
  const mels = info.features ? info.features.n_mels : 0;
  const inputs = {input_ids: ['int64', Array(rank).fill(null)]};
  if (info.io.stateful && info.usesPosition) inputs.position = ['int64', [null]];
  if (info.numClasses) inputs.condition = ['int64', [null]];
  if (info.features) inputs.features = ['float32', info.io.sequence || info.io.samples ? [null, null, mels] : [null, mels]];
  if (info.io.samples) inputs.uniforms = ['float64', [null, null]];
  const outputs = info.io.samples ? {tokens: ['int64', [null, null]]}
    : {[info.outputName]: ['float32', [...Array(rank).fill(null), info.outputWidth]]};
  for (const s of info.state) {
    inputs[s.input] = [s.dtype, [null, ...s.shape]];
    outputs[s.output] = [s.dtype, [null, ...s.shape]];
  }
  return {inputs, outputs};
}

/** ContractError naming the first mismatch between the session's inputs/outputs and the metadata. */
export function checkGraph(session, info, source = 'the model') {
  const want = expectedIO(info);
  const problems = [...nameProblems('inputs', session.inputNames, Object.keys(want.inputs)),
                    ...nameProblems('outputs', session.outputNames, Object.keys(want.outputs))];
  if (!problems.length) {
    for (const [names, metadata, expected] of [[session.inputNames, session.inputMetadata, want.inputs],
                                                [session.outputNames, session.outputMetadata, want.outputs]]) {
      if (!metadata) continue;  // an older ort: names only
      for (const [i, arg] of metadata.entries()) {
        const problem = argProblem(arg.name ?? names[i], arg, ...expected[arg.name ?? names[i]]);
        if (problem) problems.push(problem);
      }
    }
  }
  if (problems.length) {
    throw new ContractError(`the graph of ${source} disagrees with its metadata (${problems[0]}); ` +
                            're-export it with `arexport onnx`');
  }
}

function nameProblems(kind, actual, expected) {
  const missing = expected.filter((n) => !actual.includes(n));
  const extra = actual.filter((n) => !expected.includes(n));
  return [...(missing.length ? [`${kind} missing: ${missing.join(', ')}`] : []),
          ...(extra.length ? [`unexpected ${kind}: ${extra.join(', ')}`] : [])];
}

function argProblem(argName, arg, dtype, shape) {
  if (arg.isTensor === false || arg.type !== dtype) return `${argName} is ${arg.type}, expected ${dtype}`;
  if (!Array.isArray(arg.shape) || arg.shape.length !== shape.length) {
    return `${argName} has shape [${arg.shape}], expected rank ${shape.length}`;
  }
  for (const [i, want] of shape.entries()) {
    const have = arg.shape[i];
    if (want !== null && typeof have === 'number' && have >= 0 && have !== want) {
      return `${argName} has shape [${arg.shape}], expected [${shape.map((w) => w ?? 'B')}]`;
    }
  }
  return null;
}

// ---- text (sections 11.2 and 11.7) ----

/** text -> element ids: the alphabet's code points (text), or the UTF-8 bytes (utf8); UsageError on a
 * character outside the alphabet. */
export function encodeText(info, text) {
  if (info.dataKind === 'utf8') return Array.from(new TextEncoder().encode(text));
  const index = new Map([...info.alphabet].map((c, i) => [c, i]));
  return [...text].map((c) => {
    if (!index.has(c)) {
      throw new UsageError(`the prompt has ${JSON.stringify(c)}, which is not in the model's alphabet; remove it`);
    }
    return index.get(c);
  });
}

/** element ids -> text (utf8: decoded with U+FFFD for each invalid sequence). */
export function decodeText(info, tokens) {
  if (info.dataKind === 'utf8') return new TextDecoder('utf-8').decode(Uint8Array.from(tokens));
  const points = [...info.alphabet];
  return Array.from(tokens, (t) => points[t]).join('');
}

// ---- field converters (each throws Error with a short reason) ----

function fail(reason) { throw new Error(reason); }
function quote(s) { return `'${String(s).slice(0, 40)}'`; }
function isIdentifier(s) { return /^[A-Za-z_][A-Za-z0-9_]*$/.test(s); }
function name(s) { return isIdentifier(s) ? s : fail(`${quote(s)} is not a name`); }
function choice(options) { return (s) => (options.includes(s) ? s : fail(`${quote(s)} is not one of ${options.join(', ')}`)); }

/** A metadata integer: ASCII digits, a leading '-' if negative, nothing else (section 2.1). */
function int(s) {
  if (!/^-?[0-9]+$/.test(s)) fail(`${quote(s)} is not a base-10 integer`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) fail(`${s} is too large`);
  return n;
}

function ranged(low, high) {
  return (s) => {
    const n = int(s);
    return n >= low && n <= high ? n : fail(`${n} is not in ${low}..${high}`);
  };
}

/** Python's float(): a decimal, 'nan', 'inf' (either sign, any case). */
function pyFloat(s) {
  const t = s.trim().toLowerCase();
  if (/^[+-]?(nan|inf|infinity)$/.test(t)) return t.includes('nan') ? NaN : (t.startsWith('-') ? -Infinity : Infinity);
  if (!/^[+-]?(\d[\d_]*\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(t)) fail(`could not convert string to float: ${quote(s)}`);
  return Number(t.replace(/_/g, ''));
}

function jsonOf(s, kind) {
  const value = JSON.parse(s);
  const ok = kind === 'str' ? typeof value === 'string' : kind === 'list' ? Array.isArray(value)
    : value !== null && typeof value === 'object' && !Array.isArray(value);
  return ok ? value : fail(`not a JSON ${kind}`);
}

function jsonInt(v) { return Number.isInteger(v) ? v : fail(`${JSON.stringify(v)} is not an integer`); }
function jsonText(v) { return typeof v === 'string' ? v : fail(`${JSON.stringify(v)} is not a string`); }

function kindFields(meta) {
  return Object.fromEntries(Object.keys(meta).sort()
    .filter((k) => k.startsWith('ar.data.') && !BUILT_IN_DATA_KEYS.has(k) && isIdentifier(k.slice(8)))
    .map((k) => [k.slice(8), meta[k]]));
}

/** The state's I/O names (section 2.2): past_key_values.{i}.* -> present.{i}.*, others in.X -> out.X. */
export function stateIONames(n) {
  return n.startsWith('past_key_values.') ? [n, 'present.' + n.slice('past_key_values.'.length)] : [`in.${n}`, `out.${n}`];
}

function stateSpecs(s) {
  return jsonOf(s, 'list').map((item) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) fail('a state entry is not a JSON object');
    for (const key of ['name', 'input', 'output', 'shape', 'dtype', 'init', 'in_place']) {
      if (!(key in item)) fail(`'${key}'`);  // Python's KeyError reads the same
    }
    const shape = Array.isArray(item.shape) ? item.shape : [];
    if (!shape.length || shape[0] !== 'batch' || !shape.slice(1).every((d) => Number.isInteger(d) && d > 0 && d <= MAX_STATE_BYTES)) {
      fail(`state '${item.name}' has shape ${JSON.stringify(item.shape)}, expected ['batch', positive ints...]`);
    }
    if (!(item.dtype in DTYPE_BYTES)) fail(`state '${item.name}' has dtype '${item.dtype}', expected one of float32, float16, float64`);
    if (typeof item.in_place !== 'boolean') fail(`state '${item.name}' has in_place ${JSON.stringify(item.in_place)}, expected true or false`);
    const init = typeof item.init === 'number' ? item.init : pyFloat(String(item.init));
    const [input, output] = stateIONames(jsonText(item.name));
    if (item.input !== input || item.output !== output) {
      fail(`state '${item.name}' is bound to '${item.input}' -> '${item.output}', expected '${input}' -> '${output}'`);
    }
    return {name: item.name, input, output, shape: shape.slice(1), dtype: item.dtype, init, inPlace: item.in_place};
  });
}

function featureSpec(s) {
  let values;
  try { values = JSON.parse(s); } catch (e) { fail(`feature spec is not JSON (${e.message})`); }
  if (values === null || typeof values !== 'object' || Array.isArray(values)) fail('feature spec is not a JSON object');
  const missing = Object.keys(FEATURE_FIELDS).filter((k) => !(k in values)).sort();
  if (missing.length) fail(`feature spec lacks ${missing.join(', ')}`);
  const unknown = Object.keys(values).filter((k) => !(k in FEATURE_FIELDS)).sort();
  if (unknown.length) fail(`feature spec has unknown keys ${unknown.join(', ')}`);
  for (const [field, type] of Object.entries(FEATURE_FIELDS)) {
    const v = values[field];
    const ok = type === 'str' ? typeof v === 'string' : type === 'int' ? Number.isInteger(v) : typeof v === 'number';
    if (!ok) fail(`feature spec field '${field}' is ${JSON.stringify(v)}, expected ${type}`);
  }
  const f = values, problems = [];
  if (f.kind !== 'log-mel') problems.push(`kind '${f.kind}' is not 'log-mel'`);
  if (f.window !== 'hann') problems.push(`window '${f.window}' is not 'hann'`);
  for (const k of ['sample_rate', 'n_fft', 'hop', 'win_length', 'n_mels']) if (f[k] <= 0) problems.push(`${k} ${f[k]} is not positive`);
  if (f.n_fft % 2) problems.push(`n_fft ${f.n_fft} is odd`);
  if (f.hop > f.n_fft || f.win_length > f.n_fft) problems.push(`hop ${f.hop} and win_length ${f.win_length} must not exceed n_fft ${f.n_fft}`);
  if (!(f.fmin >= 0 && f.fmin < f.fmax && f.fmax <= f.sample_rate / 2)) problems.push(`fmin ${f.fmin} and fmax ${f.fmax} are not 0 <= fmin < fmax <= sample_rate / 2`);
  if (!(Number.isFinite(f.log_floor) && f.log_floor > 0)) problems.push(`log_floor ${f.log_floor} is not a positive number`);
  if (f.power !== 1 && f.power !== 2) problems.push(`power ${f.power} is not 1 or 2`);
  if (problems.length) fail(`invalid feature spec: ${problems.join('; ')}`);
  return values;
}

/** 'ar.output' -> {kind: 'softmax'} or {kind: 'logistic_mixture', mixtures: K}; a kind this runtime lacks is refused. */
function headSpec(spec, levels) {
  const {kind, ...params} = spec;
  if (typeof kind !== 'string') fail(`the output head has no kind (got ${JSON.stringify(spec)}); expected one of softmax, logistic_mixture`);
  if (kind === 'softmax') {
    if (Object.keys(params).length) fail(`the softmax head's fields are wrong (unexpected ${Object.keys(params).join(', ')})`);
    return {kind};
  }
  if (kind === 'logistic_mixture') {
    const extra = Object.keys(params).filter((k) => k !== 'mixtures');
    if (extra.length || !('mixtures' in params)) fail(`the logistic_mixture head's fields are wrong (${extra.length ? 'unexpected ' + extra.join(', ') : "missing 'mixtures'"})`);
    const K = params.mixtures;
    if (!Number.isInteger(K) || K < 1 || K > MAX_MIXTURES) fail(`${JSON.stringify(K)} mixture components is not an integer in 1..${MAX_MIXTURES}`);
    if (levels < 2) fail('a mixture needs at least 2 levels');
    return {kind, mixtures: K};
  }
  return fail(`no output head '${kind}'; this runtime knows softmax, logistic_mixture`);
}
