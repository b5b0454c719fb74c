import { test } from "node:test";
import assert from "node:assert/strict";

import { greet } from "../src/function.js";

const text = (bytes) => new TextDecoder().decode(bytes);

test("greets with the size and type of the body", () => {
  assert.equal(text(greet(new Uint8Array(3), "image/png", [["greeting", "hi"]])), "hi: 3 bytes of image/png\n");
  assert.equal(text(greet(new Uint8Array(0), "", [])), "hello: 0 bytes of unknown type\n");
});

test("refuses an unknown parameter", () => {
  assert.throws(() => greet(new Uint8Array(0), "", [["colour", "red"]]), {
    message: "unknown parameter `colour`; this function takes `greeting`",
  });
});
