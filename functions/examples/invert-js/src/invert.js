// The function's work, apart from the component's export so `npm test`
// runs it in Node: decodes a PNG with fast-png (pure JavaScript, so it
// runs in the sandbox as it runs in Node), inverts its colours and encodes
// it again. Alpha stays as it was: inverting it would hide the picture.
import { decode, encode } from "fast-png";

/** A problem with the caller's input: the component answers `invalid-input`. */
export class InputError extends Error {}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * Reads the parameters: `strength`, a percentage (0–100, default 100) of
 * the way from the original to its negative.
 */
export function readParams(params) {
  let strength = 100;
  for (const [key, value] of params) {
    if (key !== "strength") {
      throw new InputError(`unknown parameter \`${key}\`; this function takes \`strength\``);
    }
    strength = Number(value);
    if (value.trim() === "" || !Number.isFinite(strength) || strength < 0 || strength > 100) {
      throw new InputError(`\`strength\` must be a number from 0 to 100, not \`${value}\``);
    }
  }
  return { strength: strength / 100 };
}

/** Moves one sample `strength` of the way to its negative. */
function inverter(max, strength) {
  return (sample) => Math.round(sample + (max - 2 * sample) * strength);
}

/**
 * Rewrites samples packed several to a byte (1-, 2- and 4-bit grey), row by
 * row: rows start on a byte boundary, and their padding bits are left alone.
 */
function mapPacked(data, width, height, depth, map) {
  const rowBytes = Math.ceil((width * depth) / 8);
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const index = y * rowBytes + (bit >> 3);
      const shift = 8 - depth - (bit & 7);
      const sample = (data[index] >> shift) & mask;
      data[index] = (data[index] & ~(mask << shift)) | (map(sample) << shift);
    }
  }
}

/** Inverts the colours of the PNG in `body`; answers a PNG. */
export function invertPng(body, params) {
  const { strength } = readParams(params);
  if (body.length < PNG_SIGNATURE.length || PNG_SIGNATURE.some((byte, i) => body[i] !== byte)) {
    throw new InputError("the body is not a PNG image (this function takes PNG)");
  }
  let png;
  try {
    png = decode(body);
  } catch (err) {
    throw new InputError(`malformed PNG: ${err.message}`);
  }
  const { width, height, depth, channels, palette } = png;
  if (palette) {
    // An indexed image's colours live in its palette: invert those, keep the indices.
    const invert = inverter(255, strength);
    png.palette = palette.map(([r, g, b, ...alpha]) => [invert(r), invert(g), invert(b), ...alpha]);
  } else if (depth < 8) {
    mapPacked(png.data, width, height, depth, inverter((1 << depth) - 1, strength));
  } else {
    const invert = inverter(depth === 16 ? 0xffff : 0xff, strength);
    // Grey+alpha and RGBA carry alpha last.
    const colours = channels === 2 || channels === 4 ? channels - 1 : channels;
    const data = png.data;
    for (let i = 0; i < data.length; i += channels) {
      for (let c = 0; c < colours; c++) data[i + c] = invert(data[i + c]);
    }
  }
  return encode({ width, height, data: png.data, depth, channels, palette: png.palette });
}
