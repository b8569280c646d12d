// The page of `arexport web` (arexport/webpage.py copies it beside index.html, the runtime's modules,
// model.onnx and onnxruntime-web's wasm files). It reads model.onnx's metadata, builds the controls of its
// data kind (text: a prompt and streaming text; image: a grid of classes on a canvas; audio: Web Audio
// playback and a WAV, a vocoder from a features .npy), samples with runtime.mjs on onnxruntime-web (wasm,
// one thread) and shows the elements as they come, with steps/s. A model it cannot run is said on the page.
//
// The query string presets the controls and may start a run at once (the tests and benchmarks use it):
//   ?seed=0&temperature=1&top_k=0&top_p=1&length=64&prompt=def&class=all&per_class=1&seconds=1&run=1
// and ?profile=1 times every onnxruntime-web call (runMs: the run's ms inside session.run).
// window.arPage reports what the page did, for scripts: {state: 'loading' | 'ready' | 'running' | 'done' |
// 'error', error, kind, graph, batch, steps, elements, seconds, stepsPerSecond, loadMs, firstElementMs,
// fetchedMs, runMs, tokens}; fetchedMs, loadMs and firstElementMs are performance.now() (ms from the
// navigation's start) when model.onnx was fetched, when the model was ready (onnxruntime-web's wasm compiled,
// the session created) and when the first element was sampled. The body's data-state mirrors state.

import * as ort from './ort.wasm.min.mjs';
import { readMetadata, parseInfo, loadModel } from './runtime.mjs';
import { encodeText } from './contract.mjs';
import { imageView } from './page-image.mjs';
import { audioView } from './page-audio.mjs';

const MODEL_URL = 'model.onnx';
const WASM_URL = 'ort-wasm-simd-threaded.wasm'; // onnxruntime-web's binary, fetched by its loader
const PAINT_EVERY_MS = 100; // how often a run yields to the browser to repaint and update steps/s
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const report = (window.arPage = { state: 'loading', error: null, kind: null, graph: null, batch: 0, steps: 0,
  elements: 0, seconds: null, stepsPerSecond: null, fetchedMs: null, loadMs: null, firstElementMs: null, runMs: null,
  tokens: null });

window.addEventListener('unhandledrejection', (event) => showError('Failed', event.reason));
main().catch((error) => showError('This page cannot run model.onnx', error));

async function main() {
  if (typeof WebAssembly !== 'object') throw new Error('this browser has no WebAssembly; use a current browser');
  ort.env.wasm.numThreads = 1; // one thread: no cross-origin isolation needed, and the figure the benchmarks compare
  ort.env.wasm.proxy = false;
  ort.env.logLevel = 'error';
  const bytes = await fetchModel();
  report.fetchedMs = performance.now();
  await checkWasm();
  const info = parseInfo(await readMetadata(bytes), MODEL_URL);
  const makeView = VIEWS[info.dataKind];
  if (!['step', 'chunk'].includes(info.graph)) {
    throw new Error(`model.onnx is a ${info.graph} graph (for scoring), and the page samples a step or chunk ` +
                    'graph; write the page from one: arexport web step.onnx --out FOLDER');
  }
  if (!makeView) {
    throw new Error(`model.onnx holds '${info.dataKind}' data, and the page shows text (characters or bytes), image and audio only; ` +
                    'sample it with arrun sample model.onnx');
  }
  Object.assign(report, { kind: info.dataKind, graph: info.graph });
  $('title').textContent = `${info.family} ${info.graph} graph: ${info.dataName || info.dataKind}`;
  $('about').textContent = describe(info);
  const view = makeView(info, { output: $('output'), field, params, wholeNumber, samplerOptions, classField });
  const form = $('controls');
  form.append(...view.fields, field('seed', 'Seed', { type: 'number', min: 0, step: 1, value: 0 }),
              button('Sample'));
  const modelFor = sessions(bytes);
  await modelFor(await firstBatch(view, form)); // the session the first run takes, ready before it starts
  report.loadMs = performance.now();
  form.hidden = false;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    run(modelFor, view, form).catch((error) => showError('Sampling failed', error));
  });
  setState('ready');
  if (params.get('run') === '1') form.requestSubmit();
}

/** batch -> (a promise of) the model loaded with a session for that batch, made once per batch size: a
 * session told its batch (freeDimensionOverrides) folds the graph's shape arithmetic, 1.2-1.8x as many steps
 * per CPU second on the shipped Transformer and PixelCNN, the same elements. bindOutputs false: onnxruntime-web
 * 1.31.1's wasm backend never copies a preallocated CPU output back (its run() returns the tensor it was given,
 * unchanged), so the runtime takes the tensors each call returns. */
function sessions(bytes) {
  const models = new Map();
  return (batch) => {
    if (!models.has(batch)) {
      models.set(batch, loadModel(ort, bytes, { source: MODEL_URL, threads: 1, bindOutputs: false,
                                                sessionOptions: { freeDimensionOverrides: { batch } } }).then((model) => {
        if (params.get('profile') === '1') timeCalls(model.session);
        return model;
      }));
    }
    return models.get(batch);
  };
}

/** The batch the form's first run will ask for (1 when the form cannot say yet, e.g. no file chosen). */
async function firstBatch(view, form) {
  try {
    return (await view.request(Object.fromEntries(new FormData(form).entries()))).batch ?? 1;
  } catch {
    return 1;
  }
}

async function run(modelFor, view, form) {
  const values = Object.fromEntries(new FormData(form).entries());
  const request = await view.request(values); // the view's part of generate()'s arguments, checked
  const seed = wholeNumber(values.seed, 'the seed');
  const batch = request.batch ?? 1;
  const model = await modelFor(batch);
  form.querySelector('button').disabled = true;
  $('error').hidden = true; // a previous run's error
  setState('running');
  Object.assign(report, { batch, steps: 0, elements: 0, firstElementMs: null, tokens: null, error: null,
                          runMs: report.runMs === null ? null : 0 });
  view.start(request);
  const started = performance.now();
  let painted = started;
  let done = 0; // elements sampled per row so far
  const onStep = (count, tokens) => { // count: elements sampled per row so far (a chunk graph: N at a time)
    report.steps = count;
    report.elements = count * batch;
    report.firstElementMs ??= performance.now();
    view.step(done, count, tokens);
    done = count;
    const now = performance.now();
    if (now - painted < PAINT_EVERY_MS) return undefined;
    painted = now;
    showSpeed(now - started, request.length);
    return new Promise((resolve) => setTimeout(resolve, 0)); // let the browser paint what came so far
  };
  try {
    const { layout, ...chosen } = request; // layout: the view's own, not generate()'s
    const result = await model.generate({ ...chosen, batch, seed, onStep });
    showSpeed(performance.now() - started, request.length);
    report.tokens = result.tokens.map((row) => Array.from(row));
    await view.finish(result);
    setState('done');
  } finally {
    form.querySelector('button').disabled = false;
  }
}

const VIEWS = { text: textView, utf8: textView, image: imageView, audio: audioView };

/** Text: a prompt box, the length and the samplers' options; the text streams in as it is sampled. A
 * character model's element is a code point of its alphabet; a utf8 model's a byte, shown decoded as it
 * streams (U+FFFD for an invalid sequence, as arrun shows it). */
function textView(info, { output, field, classField }) {
  const [classes, conditionOf] = classField(info);
  const bytes = info.dataKind === 'utf8';
  const points = bytes ? null : Array.from(info.alphabet); // element i is the alphabet's i-th code point
  const fields = [
    field('prompt', 'Prompt', { tag: 'textarea', value: '', wide: true }),
    ...classes,
    field('length', bytes ? 'Bytes to generate' : 'Characters to generate', { type: 'number', min: 1, step: 1, value: 200 }),
    field('temperature', 'Temperature', { type: 'number', min: 0, step: 'any', value: 1 }),
    field('top_k', 'Top-k (0: all)', { type: 'number', min: 0, step: 1, value: 0 }),
    field('top_p', 'Top-p', { type: 'number', min: 0, max: 1, step: 'any', value: 1 }),
  ];
  const text = Object.assign(document.createElement('div'), { id: 'text' });
  output.replaceChildren(text);
  let generated, promptLength, decoder;
  return {
    fields,
    request(values) {
      const prompt = values.prompt ?? '';
      const room = info.maxLength ? info.maxLength - encodeText(info, prompt).length : Infinity;
      const length = Math.min(wholeNumber(values.length, 'the length', 1), room);
      if (!(length >= 1)) throw new Error(`the prompt leaves no room in the model's ${info.maxLength} positions; shorten it`);
      return { batch: 1, length, prompts: [prompt], condition: conditionOf(values), ...samplerOptions(values) };
    },
    start(request) {
      const shown = Object.assign(document.createElement('span'), { className: 'prompt', textContent: request.prompts[0] });
      promptLength = encodeText(info, request.prompts[0]).length;
      generated = document.createTextNode('');
      decoder = new TextDecoder('utf-8'); // a byte sequence split between steps waits for its end
      text.replaceChildren(shown, generated);
    },
    step(from, to, tokens) { // elements from..to-1 of the sample, after the prompt
      const row = tokens[0].subarray(promptLength + from, promptLength + to);
      generated.appendData(bytes ? decoder.decode(Uint8Array.from(row), { stream: true }) : Array.from(row, (t) => points[t]).join(''));
    },
    finish() {
      if (bytes) generated.appendData(decoder.decode()); // an unfinished sequence at the end: U+FFFD
    },
  };
}

/** A conditional model's class choice -> [the fields (none for an unconditional model), values -> the
 * condition generate() takes (undefined when unconditional)]. */
function classField(info) {
  if (!info.numClasses) return [[], () => undefined];
  const names = Array.from({ length: info.numClasses }, (_, c) => [c, info.classNames[c] ?? String(c)]);
  return [[field('class', 'Class', { choices: names, value: 0 })], (values) => Number(values.class)];
}

/** The sampler options of a form (temperature, top-k, top-p), checked as arrun checks them. */
function samplerOptions(values) {
  const temperature = Number(values.temperature ?? 1);
  const topK = wholeNumber(values.top_k ?? 0, 'top-k');
  const topP = Number(values.top_p ?? 1);
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new Error('the temperature must be a number >= 0');
  if (!(topP > 0 && topP <= 1)) throw new Error('top-p must be in (0, 1]');
  return { temperature, topK, topP };
}

/** ``value`` as an integer >= ``low``, or an Error naming ``what``. */
function wholeNumber(value, what, low = 0) {
  const number = Number(value);
  if (!Number.isInteger(number) || number < low) throw new Error(`${what} must be a whole number >= ${low}, got ${value}`);
  return number;
}

/** A labelled control named ``name``; ``options``: tag, type, value, min, max, step, wide, choices, accept. */
function field(name, label, { tag = 'input', wide = false, choices, ...attributes }) {
  const control = document.createElement(choices ? 'select' : tag);
  control.name = control.id = name;
  for (const [value, text] of choices ?? []) control.append(new Option(text, value));
  for (const [key, value] of Object.entries(attributes)) control.setAttribute(key, value);
  if (attributes.value !== undefined) control.value = attributes.value;
  if (params.has(name) && control.type !== 'file') control.value = params.get(name);
  const wrapper = Object.assign(document.createElement('label'), { className: wide ? 'wide' : '' });
  wrapper.append(label, control);
  return wrapper;
}

function button(text) {
  return Object.assign(document.createElement('button'), { type: 'submit', id: 'sample', textContent: text });
}

async function fetchModel() {
  const response = await fetch(MODEL_URL);
  if (!response.ok) throw new Error(`the server answered ${response.status} for model.onnx; put the model beside index.html`);
  return new Uint8Array(await response.arrayBuffer());
}

/** session.run timed: each call's ms added to report.runMs (what the benchmarks call its share). */
function timeCalls(session) {
  const run = session.run.bind(session);
  report.runMs ??= 0;
  session.run = async (...args) => {
    const start = performance.now();
    try {
      return await run(...args);
    } finally {
      report.runMs += performance.now() - start;
    }
  };
}

/** onnxruntime-web reports a missing binary only as "no available backend"; say which file and why here. */
async function checkWasm() {
  const response = await fetch(WASM_URL, { method: 'HEAD' });
  if (!response.ok) {
    throw new Error(`the server answered ${response.status} for ${WASM_URL}, onnxruntime-web's WebAssembly; ` +
                    'put it beside index.html (arexport web writes it)');
  }
}

function describe(info) {
  const parts = [`${info.vocabSize} levels`, `format version ${info.formatVersion}`, `${info.precision}`];
  if (info.numClasses) parts.push(`${info.numClasses} classes`);
  if (Number.isFinite(info.bitsPerDim)) parts.push(`${info.bitsPerDim.toFixed(3)} bits/dim (${info.bitsSplit})`);
  return `${parts.join(' · ')} · onnxruntime-web ${ort.env.versions?.web ?? ''}, wasm, one thread`;
}

function showSpeed(ms, length) {
  report.seconds = ms / 1000;
  report.stepsPerSecond = report.steps / report.seconds;
  const elements = report.batch > 1 ? ` (${Math.round(report.elements / report.seconds)} elements/s, ${report.batch} at once)` : '';
  $('speed').textContent = `${Math.round(report.stepsPerSecond)} steps/s${elements} · ${report.steps} of ${length} ` +
    `steps in ${report.seconds.toFixed(2)} s`;
}

function showError(context, error) {
  const message = error?.message ?? String(error);
  report.error = message;
  setState('error');
  const box = $('error');
  box.textContent = `${context}: ${message}`;
  box.hidden = false;
  if (report.loadMs === null) $('title').textContent = 'This page cannot run the model';
  console.error(error);
}

function setState(state) {
  report.state = state;
  document.body.dataset.state = state;
}
