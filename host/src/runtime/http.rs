//! Calling a `wasi:http/proxy` component: the request (decoded from its
//! `message/http` form) goes to `wasi:http/incoming-handler.handle` in a
//! fresh instance under the same sandbox as a transform, and the response
//! is read as the guest writes it, up to the output cap.
//!
//! The guest may make no outgoing request: [`SandboxHooks`] refuses every
//! one with `HTTP-request-denied`, as the sandbox grants no network.

use axum::http::{self, HeaderName, HeaderValue, Method};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sluice_core::{CallOutput, CallRequest, Outcome};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode as HttpErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::{CallLimits, CallLog, CallState, Failure, Invocation, InvokeError, Runtime, Usage, outcome_of};
use crate::http_message::{self, HttpRequest, HttpResponse, MAX_HEAD_BYTES, MAX_HEADERS};

/// Hooks that make `wasi:http` a server-only API in the sandbox.
#[derive(Debug, Default)]
pub struct SandboxHooks;

impl WasiHttpHooks for SandboxHooks {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

/// What reading the guest's response came to.
enum Answered {
    Response(HttpResponse),
    /// `handle` returned (or trapped) without setting a response.
    Nothing,
    /// The guest set an error code instead of a response.
    Error(HttpErrorCode),
    /// The body passed the output cap after `size` bytes.
    TooLarge(usize),
    /// The head passed [`MAX_HEADERS`] or [`MAX_HEAD_BYTES`].
    HeadTooLarge(usize),
    /// The body stream failed (the guest dropped it unfinished, say).
    BodyFailed(String),
}

impl Runtime {
    /// Calls a `wasi:http` component with the request `request` carries as
    /// `message/http`; answers the response the same way.
    pub(super) async fn invoke_http(
        &self,
        pre: &ProxyPre<CallState>,
        request: CallRequest,
        limits: &CallLimits,
    ) -> Invocation {
        let decoded = if request.content_type == http_message::REQUEST_TYPE {
            HttpRequest::decode(&request.body).map_err(|err| InvokeError::InvalidInput(err.to_string()))
        } else {
            Err(InvokeError::InvalidInput(
                "this function is a wasi:http component: call it over HTTP at /v1/functions/{name}/http/".to_owned(),
            ))
        };
        let bytes_in = decoded.as_ref().map_or(0, |request| request.body.len() as u64);
        let request = match decoded.and_then(to_hyper) {
            Ok(request) => request,
            Err(err) => {
                let usage = Usage { outcome: Outcome::Failed(err.code()), bytes_in, ..Usage::default() };
                return Invocation { result: Err(err), usage, log: CallLog::default() };
            }
        };
        let pre = pre.clone();
        let max_output = limits.max_output;
        let sandboxed = self
            .run_sandboxed(limits, bytes_in, async move |store: &mut Store<CallState>| {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                let mut view = store.data_mut().http();
                let incoming = view.new_incoming_request(Scheme::Http, request).map_err(Failure::Instantiate)?;
                let outparam = view.new_response_outparam(sender).map_err(Failure::Instantiate)?;
                let proxy = pre.instantiate_async(&mut *store).await.map_err(Failure::Instantiate)?;
                let handled = proxy.wasi_http_incoming_handler().call_handle(&mut *store, incoming, outparam);
                // Read while the guest writes: it may write more than the
                // body's buffer holds before `handle` returns.
                let (handled, answered) = tokio::join!(handled, read_response(receiver, max_output));
                match (handled, answered) {
                    (_, Answered::TooLarge(size)) => Ok(Err(InvokeError::OutputTooLarge { size, limit: max_output })),
                    (Err(err), _) => Err(Failure::Call(err)),
                    (Ok(()), Answered::Response(response)) => Ok(Ok(response)),
                    (Ok(()), Answered::Nothing) => Ok(Err(InvokeError::FunctionError(
                        "the function returned without setting a response".to_owned(),
                    ))),
                    (Ok(()), Answered::Error(code)) => {
                        Ok(Err(InvokeError::FunctionError(format!("the function answered with an error: {code:?}"))))
                    }
                    (Ok(()), Answered::HeadTooLarge(size)) => Ok(Err(InvokeError::FunctionError(format!(
                        "the response head is {size} bytes or {MAX_HEADERS}+ fields; at most \
                         {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} fields are allowed"
                    )))),
                    (Ok(()), Answered::BodyFailed(reason)) => {
                        Ok(Err(InvokeError::FunctionError(format!("the response body broke off: {reason}"))))
                    }
                }
            })
            .await;
        let result = sandboxed.result.and_then(|answered| answered);
        let mut usage = sandboxed.usage;
        usage.bytes_out = result.as_ref().map_or(0, |response| response.body.len() as u64);
        usage.outcome = outcome_of(&result);
        let result = result.map(|response| CallOutput {
            body: response.encode(),
            content_type: http_message::RESPONSE_TYPE.to_owned(),
        });
        Invocation { result, usage, log: sandboxed.log }
    }
}

/// The decoded request as hyper's, with a full body. The authority is the
/// `host` field the caller sent (the guest reads it from the request).
fn to_hyper(request: HttpRequest) -> Result<http::Request<Full<Bytes>>, InvokeError> {
    let invalid = |what: String| InvokeError::InvalidInput(format!("the HTTP request cannot be passed on: {what}"));
    let method = Method::from_bytes(request.method.as_bytes()).map_err(|err| invalid(err.to_string()))?;
    let authority = request
        .headers
        .iter()
        .find(|(name, _)| name == "host")
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .unwrap_or("localhost");
    let uri = format!("http://{authority}{}", request.target);
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in request.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|err| invalid(err.to_string()))?;
        let value = HeaderValue::from_bytes(&value).map_err(|err| invalid(err.to_string()))?;
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(request.body))).map_err(|err| invalid(err.to_string()))
}

/// Waits for the guest's response and reads its body as it is written,
/// stopping at `max_output` bytes.
async fn read_response(
    receiver: tokio::sync::oneshot::Receiver<Result<http::Response<HyperOutgoingBody>, HttpErrorCode>>,
    max_output: usize,
) -> Answered {
    let response = match receiver.await {
        Err(_dropped) => return Answered::Nothing,
        Ok(Err(code)) => return Answered::Error(code),
        Ok(Ok(response)) => response,
    };
    let (parts, mut body) = response.into_parts();
    let mut headers: http_message::Fields =
        parts.headers.iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect();
    if !http_message::head_fits(&headers) {
        return Answered::HeadTooLarge(http_message::head_bytes(&headers));
    }
    headers.retain(|(name, _)| http_message::is_forwarded(name));
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => return Answered::BodyFailed(format!("{err:?}")),
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > max_output {
                // Dropping the body here closes the guest's stream: its
                // next write fails instead of waiting for the deadline.
                return Answered::TooLarge(collected.len() + data.len());
            }
            collected.extend_from_slice(&data);
        }
    }
    Answered::Response(HttpResponse { status: parts.status.as_u16(), headers, body: collected })
}
