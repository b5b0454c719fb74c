// Builds the component. componentize-js wants a WIT world even for a
// fetch-event handler; its engine exports `wasi:http/incoming-handler` at
// WASI 0.2.10, while the WASI WIT that ships beside it (in jco) is 0.2.12.
// WASI 0.2 releases only add to the API, so the world is written at the
// engine's version from that WIT, into a temporary folder.
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { componentize } from "@bytecodealliance/componentize-js";

const ENGINE_WASI = "0.2.10";
const SHIPPED = "node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12";

const wit = await mkdtemp(join(tmpdir(), "echo-http-wit-"));
try {
  await cp(SHIPPED, join(wit, "deps"), { recursive: true });
  for (const entry of await readdir(join(wit, "deps"), { recursive: true })) {
    if (!entry.endsWith(".wit")) continue;
    const path = join(wit, "deps", entry);
    await writeFile(path, (await readFile(path, "utf8")).replaceAll("@0.2.12", `@${ENGINE_WASI}`));
  }
  await writeFile(
    join(wit, "world.wit"),
    `package sluice-examples:echo-http;\nworld echo { include wasi:http/proxy@${ENGINE_WASI}; }\n`,
  );
  const { component } = await componentize({ sourcePath: "src/app.js", witPath: wit, worldName: "echo" });
  await writeFile("echo-http-js.wasm", component);
} finally {
  await rm(wit, { recursive: true, force: true });
}
