// `{{name}}`: a Sluice function. Sluice calls `handle` once per request, in
// a fresh sandbox, with `{ body, contentType, params }` (a Uint8Array, a
// string, and [key, value] pairs). Return `{ body, contentType }`, or throw
// `{ tag: "invalid-input", val: message }` (422 `invalid_input` to the
// caller) or `{ tag: "internal", val: message }` (500 `function_error`).
// What it logs to the console becomes the job's log (`sluice logs JOB`).
import { greet } from "./function.js";

export function handle(req) {
  let body;
  try {
    body = greet(req.body, req.contentType, req.params);
  } catch (err) {
    throw { tag: "invalid-input", val: err.message };
  }
  console.error(`{{name}}: answered ${body.length} bytes`);
  return { body, contentType: "text/plain; charset=utf-8" };
}
