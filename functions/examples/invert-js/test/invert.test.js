import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { decode, encode } from "fast-png";

import { InputError, invertPng, readParams } from "../src/invert.js";

const photo = (name) => new Uint8Array(readFileSync(new URL(`../../../../testdata/photos/${name}`, import.meta.url)));

test("inverts RGB and keeps alpha", () => {
  const png = encode({ width: 2, height: 1, channels: 4, data: new Uint8Array([0, 100, 255, 7, 10, 20, 30, 255]) });
  const out = decode(invertPng(png, []));
  assert.deepEqual([...out.data], [255, 155, 0, 7, 245, 235, 225, 255]);
});

test("inverts 16-bit samples against 65535", () => {
  const png = encode({ width: 1, height: 1, channels: 3, depth: 16, data: new Uint16Array([0, 1000, 65535]) });
  assert.deepEqual([...decode(invertPng(png, [])).data], [65535, 64535, 0]);
});

test("inverts an indexed image's palette and keeps its indices", () => {
  const palette = [[0, 0, 0], [255, 128, 1]];
  const png = encode({ width: 2, height: 1, channels: 1, depth: 8, palette, data: new Uint8Array([1, 0]) });
  const out = decode(invertPng(png, []));
  assert.deepEqual(out.palette, [[255, 255, 255], [0, 127, 254]]);
  assert.deepEqual([...out.data], [1, 0]);
});

test("inverts packed 1-bit grey without touching the row padding", () => {
  const png = encode({ width: 3, height: 1, channels: 1, depth: 1, data: new Uint8Array([0b10100000]) });
  assert.deepEqual([...decode(invertPng(png, [])).data], [0b01000000]);
});

test("half strength moves every colour halfway to its negative", () => {
  const png = encode({ width: 1, height: 1, channels: 3, data: new Uint8Array([0, 255, 100]) });
  assert.deepEqual([...decode(invertPng(png, [["strength", "50"]])).data], [128, 128, 128]);
});

test("inverting a photo twice gives it back", () => {
  const original = photo("kodim23.png");
  const twice = invertPng(invertPng(original, []), []);
  assert.deepEqual(decode(twice).data, decode(original).data);
});

test("refuses what is not a PNG, a broken PNG and unknown or bad parameters", () => {
  assert.throws(() => invertPng(photo("jpg-size-1x1.jpg"), []), new InputError("the body is not a PNG image (this function takes PNG)"));
  assert.throws(() => invertPng(photo("sample.png").subarray(0, 100), []), (err) => err instanceof InputError && err.message.startsWith("malformed PNG: "));
  assert.throws(() => readParams([["colour", "red"]]), new InputError("unknown parameter `colour`; this function takes `strength`"));
  assert.throws(() => readParams([["strength", "150"]]), new InputError("`strength` must be a number from 0 to 100, not `150`"));
  assert.throws(() => readParams([["strength", ""]]), /must be a number/);
});
