//! A `wasi:http/proxy` component that answers every request with a short
//! text: the smallest thing `wasmtime serve` can run, so the report can set
//! Sluice's no-op call beside it (same runtime, a fresh instance per
//! request on both sides).

use std::io::Write as _;

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        let Ok(mut out) = body.write() else { return };
        // A failed write only shortens this benchmark answer.
        let _ = out.write_all(b"Hello, world!\n").and_then(|()| std::io::Write::flush(&mut out));
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}
