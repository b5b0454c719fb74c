// `invert-js`: an example Sluice function in JavaScript. Sluice calls
// `handle` once per request, in a fresh sandbox, with `{ body, contentType,
// params }`; it answers a PNG, or throws `{ tag: "invalid-input", val }`
// (422 `invalid_input` to the caller) for input it cannot use. npm
// packages work when bundled into one module first (`npm run build` runs
// esbuild, then componentize-js).
import { InputError, invertPng } from "./invert.js";

export function handle(req) {
  let body;
  try {
    body = invertPng(req.body, req.params);
  } catch (err) {
    if (err instanceof InputError) throw { tag: "invalid-input", val: err.message };
    throw { tag: "internal", val: String(err) };
  }
  console.error(`invert-js: ${req.body.length} bytes in, ${body.length} bytes out`);
  return { body, contentType: "image/png" };
}
