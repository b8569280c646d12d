// The image view of page.mjs: a grid on one canvas, a column per class (a conditional model) or per sample,
// each pixel drawn as soon as it is sampled. Level v is the gray round(v * 255 / (V - 1)) (docs/contract.md
// section 11.1); pixels not yet sampled are pale blue.

const SIDE = 96; // canvas pixels of an image's longer side, at least 2 per image pixel
const GAP = 6; // canvas pixels between images
const CAPTION = 16; // canvas pixels above each column for its class name
const PENDING = '#dde4f0';
const MAX_SAMPLES = 64;

export function imageView(info, { output, field, wholeNumber }) {
  const [height, width] = info.imageShape;
  const SCALE = Math.max(2, Math.floor(SIDE / Math.max(height, width))); // canvas pixels per image pixel
  const classes = info.numClasses;
  const names = Array.from({ length: classes }, (_, c) => info.classNames[c] ?? String(c));
  const fields = [
    ...(classes ? [field('class', 'Class', { choices: [['all', 'every class'], ...names.map((n, c) => [c, n])], value: 'all' })] : []),
    field('per_class', classes ? 'Samples per class' : 'Samples', { type: 'number', min: 1, max: MAX_SAMPLES, step: 1, value: classes ? 1 : 8 }),
    field('temperature', 'Temperature', { type: 'number', min: 0, step: 'any', value: 1 }),
  ];
  const canvas = Object.assign(document.createElement('canvas'), { id: 'grid', width: 1, height: 1 });
  output.replaceChildren(canvas);
  const context = canvas.getContext('2d');
  const gray = Array.from({ length: info.vocabSize }, (_, v) => {
    const g = Math.round((v * 255) / Math.max(1, info.vocabSize - 1));
    return `rgb(${g},${g},${g})`;
  });
  let cells; // per row of the batch: the canvas x, y of its image's top-left pixel

  return {
    fields,
    request(values) {
      const perClass = wholeNumber(values.per_class, 'the number of samples', 1);
      if (perClass > MAX_SAMPLES) throw new Error(`ask for at most ${MAX_SAMPLES} samples at once`);
      const temperature = Number(values.temperature);
      if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new Error('the temperature must be a number >= 0');
      const chosen = !classes ? [] : values.class === 'all' ? names.map((_, c) => c) : [Number(values.class)];
      const batch = classes ? chosen.length * perClass : perClass;
      // Row b is sequence b of arrun's plan (docs/contract.md 9.1): every class's samples in turn.
      const condition = classes ? Array.from({ length: batch }, (_, b) => chosen[Math.floor(b / perClass)]) : undefined;
      return { batch, length: height * width, temperature, condition, layout: { chosen, perClass } };
    },
    start({ batch, layout: { chosen, perClass } }) {
      const columns = classes ? chosen.length : Math.min(batch, 8);
      const rows = classes ? perClass : Math.ceil(batch / columns);
      const top = classes ? CAPTION : 0;
      canvas.width = columns * (width * SCALE + GAP) + GAP;
      canvas.height = top + rows * (height * SCALE + GAP) + GAP;
      context.fillStyle = 'white';
      context.fillRect(0, 0, canvas.width, canvas.height);
      cells = Array.from({ length: batch }, (_, b) => {
        const [column, row] = classes ? [Math.floor(b / perClass), b % perClass] : [b % columns, Math.floor(b / columns)];
        return [GAP + column * (width * SCALE + GAP), top + GAP + row * (height * SCALE + GAP)];
      });
      context.fillStyle = PENDING;
      for (const [x, y] of cells) context.fillRect(x, y, width * SCALE, height * SCALE);
      context.fillStyle = '#333';
      context.font = '12px system-ui, sans-serif';
      if (classes) chosen.forEach((c, column) => context.fillText(names[c], GAP + column * (width * SCALE + GAP), 12));
    },
    step(from, to, tokens) { // pixels from..to-1 of every image
      for (let t = from; t < to; t++) {
        const y = Math.floor(t / width) * SCALE;
        const x = (t % width) * SCALE;
        tokens.forEach((row, b) => {
          context.fillStyle = gray[row[t]];
          context.fillRect(cells[b][0] + x, cells[b][1] + y, SCALE, SCALE);
        });
      }
    },
    finish() {
      window.arPage.cells = cells.map(([x, y]) => ({ x, y, scale: SCALE, width, height }));
    },
  };
}
