// The function's work, apart from the component's export so `npm test`
// runs it in Node: says how many bytes of what arrived, with the
// `greeting` parameter (default `hello`), and refuses parameters it does
// not know.
export function greet(body, contentType, params) {
  let greeting = "hello";
  for (const [key, value] of params) {
    if (key !== "greeting") {
      throw new Error(`unknown parameter \`${key}\`; this function takes \`greeting\``);
    }
    greeting = value;
  }
  const kind = contentType === "" ? "unknown type" : contentType;
  return new TextEncoder().encode(`${greeting}: ${body.length} bytes of ${kind}\n`);
}
