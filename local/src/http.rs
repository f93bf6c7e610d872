//! Serves the API over plain HTTP on localhost, calling the same handler the
//! API Gateway Lambda calls, so `curl` works against the local stack.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use provisioning::api::{handle, Api, ApiRequest, ApiResponse, Problem};
use std::convert::Infallible;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Requests larger than this are refused before reaching the handler.
const TRANSPORT_LIMIT: usize = 4 * 1024 * 1024;

async fn serve_one(
    api: Api,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, TRANSPORT_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return Ok(to_hyper(
                Problem::new(413, "too-large", "Payload too large", "body too large")
                    .into_response(),
            ))
        }
    };
    let query = parts
        .uri
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let request = ApiRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        headers,
        body,
    };
    Ok(to_hyper(handle(&api, request).await))
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_hyper(response: ApiResponse) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name, value);
    }
    let body = response
        .body
        .map(|b| Bytes::from(b.to_string()))
        .unwrap_or_default();
    builder.body(Full::new(body)).expect("valid response")
}

/// Accepts connections until `stop` turns true.
pub async fn serve(api: Api, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve_one(api.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
