// Times @vladmandic/human (BlazeFace + its emotion model, TensorFlow.js on the WebAssembly
// backend) on the same frames `dgcn bench` uses, and scores its labels on the labelled clip's
// stable frames. Research measurement for README → Speed; not part of the tests.
//
// Set-up (outside the project):
//   mkdir /tmp/human && cd /tmp/human && npm init -y
//   npm install @vladmandic/human@3.3.6 @tensorflow/tfjs-backend-wasm@4.22.0 \
//     @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-converter@4.22.0   # its node build requires both
//   # raw RGB frames (Node decodes no video): 640×480×3 bytes each, e.g. with OpenCV
//   python3 -c "import cv2,sys; v=cv2.VideoCapture(sys.argv[1]); f=open(sys.argv[2],'wb')
//   while True:
//       ok,fr=v.read()
//       if not ok: break
//       f.write(cv2.cvtColor(fr,cv2.COLOR_BGR2RGB).tobytes())" CLIP frames.rgb
//   NODE_PATH=/tmp/human/node_modules node scripts/peer-human.mjs frames.rgb [LABELS_CSV] [FRAMES]
//
// Prints one JSON object: median and p95 milliseconds per frame (`human.detect`: face detection
// and emotion only; mesh, iris, description, body, hands, objects off), frames with a face, and
// the label agreement on the frames at least 10 frames away from a label change.
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

// Human's package.json "exports" lacks the "./" its node builds need, so load them by path.
const nodeModules = process.env.NODE_PATH || path.join(process.cwd(), 'node_modules');
const require = createRequire(path.join(nodeModules, 'x.js'));
const modelDir = path.join(nodeModules, '@vladmandic', 'human');
const Human = require(path.join(modelDir, 'dist', 'human.node-wasm.js')).default;

const [rgbPath, labelsPath = '../shared/clips/synth_tfeid_s01_expressions_labels.csv', limit = '510'] =
  process.argv.slice(2);
const [W, H] = [640, 480];
const frameBytes = W * H * 3;

// Node's fetch reads no file:// URLs: the models are served from here (the wasm is read from disk).
const server = http.createServer((req, res) => {
  const file = path.join(nodeModules, decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (!file.startsWith(nodeModules) || !fs.existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  const type = file.endsWith('.wasm') ? 'application/wasm' : file.endsWith('.json') ? 'application/json' : 'application/octet-stream';
  res.writeHead(200, { 'Content-Type': type }).end(fs.readFileSync(file));
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}`;

const human = new Human({
  backend: 'wasm',
  wasmPath: `${nodeModules}/@tensorflow/tfjs-backend-wasm/dist/`, // read with fs in Node
  modelBasePath: `${base}/@vladmandic/human/models/`,
  async: false,
  warmup: 'none',
  debug: false,
  cacheSensitivity: 0, // every frame analysed, as dgcn with --hold-still 0 does
  face: {
    enabled: true,
    detector: { enabled: true, rotation: false, maxDetected: 1 },
    mesh: { enabled: false },
    iris: { enabled: false },
    description: { enabled: false },
    emotion: { enabled: true },
    antispoof: { enabled: false },
    liveness: { enabled: false },
  },
  body: { enabled: false },
  hand: { enabled: false },
  object: { enabled: false },
  gesture: { enabled: false },
  segmentation: { enabled: false },
  filter: { enabled: false },
});

async function main() {
  await human.load();
  const data = fs.readFileSync(rgbPath);
  const n = Math.min(Number(limit), Math.floor(data.length / frameBytes));
  if (n === 0) throw new Error(`no 640×480 RGB frames in ${rgbPath}`);
  // One frame through Human; the time covers `human.detect` only, not making the tensor.
  const detect = async (i) => {
    const t = human.tf.tensor3d(new Uint8Array(data.buffer, data.byteOffset + i * frameBytes, frameBytes), [H, W, 3], 'int32');
    const t0 = performance.now();
    const res = await human.detect(t);
    const ms = performance.now() - t0;
    human.tf.dispose(t);
    return { res, ms };
  };
  // Warm-up (kernel compilation, first allocation).
  for (let i = 0; i < 3; i++) await detect(i);
  const times = [];
  const labels = [];
  for (let i = 0; i < n; i++) {
    const { res, ms } = await detect(i);
    times.push(ms);
    const face = res.face && res.face[0];
    const top = face && face.emotion && face.emotion[0];
    labels.push(top ? top.emotion : null); // Human's labels are the clip's names
  }
  const sorted = [...times].sort((a, b) => a - b);
  const result = {
    frames: n,
    backend: human.tf.getBackend(),
    median_ms: +sorted[Math.floor((n - 1) / 2)].toFixed(2),
    p95_ms: +sorted[Math.floor(0.95 * (n - 1))].toFixed(2),
    frames_with_face: labels.filter((l) => l !== null).length,
  };
  if (fs.existsSync(labelsPath)) {
    const truth = fs.readFileSync(labelsPath, 'utf8').trim().split(/\r?\n/).slice(1).map((l) => l.split(',')[2].trim()).slice(0, n);
    const stable = [];
    for (let i = 0; i < truth.length; i++) {
      let ok = true;
      for (let j = Math.max(0, i - 10); j <= Math.min(truth.length - 1, i + 10); j++) ok &&= truth[j] === truth[i];
      if (ok) stable.push(i);
    }
    const per = {};
    let agree = 0;
    for (const i of stable) {
      const hit = labels[i] === truth[i];
      agree += hit;
      const [a, b] = per[truth[i]] ?? [0, 0];
      per[truth[i]] = [a + hit, b + 1];
    }
    result.stable_frames = stable.length;
    result.agreement = +(agree / Math.max(1, stable.length)).toFixed(4);
    result.per_class = Object.fromEntries(Object.entries(per).map(([k, [a, b]]) => [k, `${a}/${b}`]));
  }
  console.log(JSON.stringify(result));
  server.close();
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
