"""`{{name}}`: a Sluice function. Sluice calls `handle` once per request, in
a fresh sandbox, with the request's body (bytes), content type and
parameters ([key, value] pairs). Return a `Response`, or raise
`Err(Error_InvalidInput(message))` (422 `invalid_input` to the caller) or
`Err(Error_Internal(message))` (500 `function_error`). What it prints
becomes the job's log (`sluice logs JOB`). `wit_world` is generated from
`wit/transform.wit` by componentize-py when it builds the component."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Error_InvalidInput, Request, Response

from greeting import greet


class WitWorld(wit_world.WitWorld):
    def handle(self, req: Request) -> Response:
        try:
            body = greet(req.body, req.content_type, req.params)
        except ValueError as err:
            raise Err(Error_InvalidInput(str(err)))
        print(f"{{name}}: answered {len(body)} bytes", file=sys.stderr)
        return Response(body=body, content_type="text/plain; charset=utf-8")
