// Node driver of tests/test_js_runtime.py and benchmarks/: runs the JavaScript runtime (arexport/web/runtime.mjs)
// on onnxruntime-node over the jobs of a JSON file and writes what they produced as JSON.
//
//   node tests/js/parity.mjs JOBS.json OUT.json
//
// JOBS.json: {"jobs": [job, ...]}, each job one of
//   {"kind": "generate", "model": PATH, "samples": n, "batch": B, "length": L, "temperature": T,
//    "topK": k, "topP": p, "prompts": [[ids], ..], "condition": c | null, "seed": s,
//    "features": {"path": F32_FILE, "frames": F} | null, "uniforms": F64_FILE | null}
//        -> {"tokens": n lists (prompt, then samples), "seconds": generate's own time, "cpu_seconds": the process's CPU time around it}: sequences 0..n-1 in batches of B as arrun makes them;
//        uniforms: n rows of L float64, row-major (sequence i's draws), else the streams (seed, i);
//        "backend": "node" (onnxruntime-node, the default) or "web" (onnxruntime-web's wasm under Node).
//   {"kind": "bench", "model": PATH, "batch": B, "steps": N, "condition": c | null, "repeats": R}
//        -> {"steps_per_second": [R figures], "cpu_steps_per_second": [R figures, by the process's CPU time]}: N step calls fed back greedy-free (the token 0), one thread.
//   {"kind": "samplers", "logits": F32_FILE, "rows": N, "width": W, "uniforms": F64_FILE, "head": {...},
//    "temperature": T, "topK": k, "topP": p, "out": I32_FILE}
//        -> {} and the N draws written as int32 to "out" (the samplers alone, on given outputs).
//   {"kind": "exp", "in": F64_FILE, "out": F64_FILE} -> Math.exp of every value, written as float64.
// Paths are relative to the working directory. Exit 1 with the error's one line on failure.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadModel, sampleHead } from '../../arexport/web/runtime.mjs';

const require = createRequire(new URL('../../arexport/web/package.json', import.meta.url));
const backends = {  // a job's "backend": onnxruntime-node (native, the default) or onnxruntime-web (wasm) under Node
  node: async () => require('onnxruntime-node'),
  web: async () => {
    const ort = await import(new URL('../../arexport/web/node_modules/onnxruntime-web/dist/ort.node.min.mjs', import.meta.url));
    ort.env.wasm.numThreads = 1;
    return ort;
  },
};

const f32 = (path) => { const b = readFileSync(path); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };
const f64 = (path) => { const b = readFileSync(path); return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)); };

const models = new Map();
async function model(path, backend = 'node') {
  const key = `${backend}:${path}`;
  if (!models.has(key)) models.set(key, await loadModel(await backends[backend](), readFileSync(path), {source: path, threads: 1}));
  return models.get(key);
}

async function generate(job) {
  const m = await model(job.model, job.backend);
  const features = job.features && {data: f32(job.features.path), frames: job.features.frames};
  const all = job.uniforms && f64(job.uniforms), L = job.length, tokens = [];
  let seconds = 0, cpu = 0;
  for (let first = 0; first < job.samples; first += job.batch) {
    const indices = [...Array(Math.min(job.batch, job.samples - first)).keys()].map((b) => first + b);
    const uniforms = all && indices.map((i) => all.subarray(i * L, (i + 1) * L));
    const before = process.cpuUsage();
    const result = await m.generate({batch: indices.length, indices, length: L, temperature: job.temperature,
                                     topK: job.topK, topP: job.topP, prompts: job.prompts,
                                     condition: job.condition ?? undefined, features, seed: job.seed, uniforms});
    tokens.push(...result.tokens.map((row) => Array.from(row)));
    const used = process.cpuUsage(before);
    seconds += result.seconds;
    cpu += (used.user + used.system) / 1e6;
  }
  return {tokens, seconds, cpu_seconds: cpu};
}

async function bench(job) {
  const m = await model(job.model);
  const B = job.batch, figures = [], cpuFigures = [];
  for (let r = 0; r < job.repeats; r++) {
    const state = m.newState(B, {condition: job.condition ?? undefined});
    const tokens = Array(B).fill(m.info.startToken), position = new BigInt64Array(B);
    const start = performance.now(), before = process.cpuUsage();
    for (let t = 0; t < job.steps; t++) {
      position.fill(BigInt(m.info.maxLength ? t % m.info.maxLength : t));
      await m.step(state, tokens, position);
      tokens.fill(0);
    }
    const used = process.cpuUsage(before);
    figures.push(job.steps / ((performance.now() - start) / 1000));
    cpuFigures.push(job.steps / ((used.user + used.system) / 1e6));
  }
  return {steps_per_second: figures, cpu_steps_per_second: cpuFigures};
}

function samplers(job) {
  const logits = f32(job.logits), u = f64(job.uniforms), W = job.width;
  const info = {output: job.head, vocabSize: job.head.kind === 'softmax' ? W : job.levels};
  const out = new Int32Array(job.rows);
  const options = {temperature: job.temperature, topK: job.topK, topP: job.topP};
  for (let i = 0; i < job.rows; i++) out[i] = sampleHead(info, logits.subarray(i * W, (i + 1) * W), options, u[i]);
  writeFileSync(job.out, out);
  return {};
}

function exp(job) {
  writeFileSync(job.out, f64(job.in).map(Math.exp));
  return {};
}

const KINDS = {generate, bench, samplers, exp};
try {
  const {jobs} = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const results = [];
  for (const job of jobs) results.push(await KINDS[job.kind](job));
  writeFileSync(process.argv[3], JSON.stringify(results));
} catch (e) {
  console.error(process.env.AR_DEBUG === '1' ? e.stack : `${e.name}: ${e.message}`);
  process.exit(1);
}
