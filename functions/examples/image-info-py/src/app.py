"""`image-info-py`: an example Sluice function in Python. Sluice calls
`handle` once per request, in a fresh sandbox; it answers the image
header's facts as JSON, or raises `Err(Error_InvalidInput(message))` (422
`invalid_input` to the caller) for input it cannot read. `wit_world` is
generated from `wit/transform.wit` by componentize-py when it builds the
component."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Error_InvalidInput, Request, Response

from header import HeaderError, describe


class WitWorld(wit_world.WitWorld):
    def handle(self, req: Request) -> Response:
        try:
            body = describe(req.body, req.params)
        except HeaderError as err:
            raise Err(Error_InvalidInput(str(err)))
        print(f"image-info-py: read {len(req.body)} bytes", file=sys.stderr)
        return Response(body=body, content_type="application/json")
