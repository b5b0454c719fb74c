// `echo-http-js`: a standard `wasi:http/proxy` component written as a
// fetch-event handler (the Service Worker API that componentize-js maps
// onto `wasi:http/incoming-handler`). Sluice serves it at
// `/v1/functions/{name}/http/{path}`: it answers the method, path, query,
// a header, the body's size and the body (as UTF-8 text) as JSON, with
// status 201 and a header of its own. `/fail` answers 418; `/big?bytes=N`
// answers N bytes; `/fetch` tries an outgoing request, which the sandbox
// refuses.
addEventListener("fetch", (event) => event.respondWith(answer(event.request)));

async function answer(request) {
  const url = new URL(request.url);
  console.error(`echo-http-js: ${request.method} ${url.pathname}`);
  if (url.pathname === "/fail") {
    return new Response("no teapot here\n", { status: 418 });
  }
  if (url.pathname === "/big") {
    return new Response(new Uint8Array(Number(url.searchParams.get("bytes") ?? "0")));
  }
  if (url.pathname === "/fetch") {
    try {
      await fetch("http://example.com/");
      return new Response("fetched\n");
    } catch (err) {
      return new Response(`refused: ${err}\n`, { status: 502 });
    }
  }
  // The bytes, not `request.text()`: the engine's text() does not return
  // on a body that is not valid UTF-8.
  const bytes = new Uint8Array(await request.arrayBuffer());
  const echoed = {
    method: request.method,
    path: url.pathname,
    query: url.search,
    greeting: request.headers.get("x-greeting"),
    authorization: request.headers.get("authorization"),
    bytes: bytes.length,
    body: new TextDecoder().decode(bytes),
  };
  return new Response(JSON.stringify(echoed), {
    status: 201,
    headers: { "content-type": "application/json", "x-echoed-by": "echo-http-js" },
  });
}
