// Drives tus-js-client (the client Uppy and most web apps use) against Slate.
// Usage: node tus-upload.mjs <endpoint> <token> <file> interrupt|parallel
// Prints one JSON line: the upload URL and, for "interrupt", the offset it resumed from.
import fs from 'node:fs';
import * as tus from 'tus-js-client';

const [endpoint, token, file, mode] = process.argv.slice(2);
const data = fs.readFileSync(file);
const common = {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: file.split('/').pop(), filetype: 'application/octet-stream' },
  retryDelays: [0, 500, 1000, 2000],
};

function run(options) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(data, {
      ...common,
      ...options,
      onError: reject,
      onSuccess: () => resolve(upload),
    });
    if (options.start !== false) upload.start();
    options.hook?.(upload, resolve);
  });
}

if (mode === 'interrupt') {
  // Stop after about 40 %, as a dropped connection or a closed tab would.
  const first = await run({
    chunkSize: 64 * 1024,
    start: false,
    hook: (upload, resolve) => {
      upload.options.onProgress = (sent, total) => {
        if (sent >= total * 0.4) {
          upload.abort().then(() => resolve(upload));
        }
      };
      upload.start();
    },
  });
  const url = first.url;
  const head = await fetch(url, { method: 'HEAD', headers: { ...common.headers, 'Tus-Resumable': '1.0.0' } });
  const resumedFrom = Number(head.headers.get('upload-offset'));
  await run({ uploadUrl: url, chunkSize: 64 * 1024 });
  console.log(JSON.stringify({ url, resumedFrom }));
} else if (mode === 'parallel') {
  const upload = await run({ parallelUploads: 3 });
  console.log(JSON.stringify({ url: upload.url }));
} else {
  console.error('mode must be interrupt or parallel');
  process.exit(2);
}
