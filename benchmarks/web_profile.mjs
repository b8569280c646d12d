// onnxruntime-web's own profiler on one step graph, the wasm build the page runs (one thread), under Node:
//   node benchmarks/web_profile.mjs MODEL.onnx STEPS [plain]
// samples STEPS elements at batch 1 (class 0 for a conditional model) through the runtime's generate, with
// the session option enableProfiling; onnxruntime-web prints its profile (one JSON event a line) on stdout,
// and this script prints, last, one line: AR-RESULT {"steps", "seconds"} (benchmarks/web_browser.py reads both).
// `plain`: without onnxruntime's profiler, for `node --cpu-prof` (V8's sampling profiler) to see the split
// between the wasm kernels and the JavaScript around them.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'arexport', 'web');
const ort = await import(path.join(web, 'node_modules', 'onnxruntime-web', 'dist', 'ort.wasm.min.mjs'));
const { loadModel } = await import(path.join(web, 'runtime.mjs'));

const [modelPath, steps, plain] = [process.argv[2], Number(process.argv[3]), process.argv[4] === 'plain'];
ort.env.wasm.numThreads = 1;
const model = await loadModel(ort, new Uint8Array(fs.readFileSync(modelPath)), {
  source: modelPath, bindOutputs: false,  // as the page loads it (arexport/web/page.mjs, sessions())
  sessionOptions: { enableProfiling: !plain, freeDimensionOverrides: { batch: 1 } } });
const length = model.info.maxLength ? Math.min(steps, model.info.maxLength) : steps;
let done = 0, seconds = 0;
while (done < steps) {
  const result = await model.generate({ batch: 1, length, seed: done, condition: model.info.numClasses ? 0 : undefined });
  done += length;
  seconds += result.seconds;
}
if (!plain) model.session.endProfiling();
console.log(`AR-RESULT ${JSON.stringify({ steps: done, seconds })}`);
