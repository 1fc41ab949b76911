//! Reading a body whole (an upstream response to store, a request body to digest), without
//! ever holding more than the size limit.
//!
//! A body that fits is collected into one `Bytes`. One that grows past the limit is handed back
//! as a stream: the chunks read so far, then the rest of the upstream body, so the client gets
//! the whole response while the gateway holds at most one limit's worth of it.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyExt;

pub enum Buffered {
    Complete(Bytes),
    /// Too large to store; stream it through.
    TooLarge(Body),
}

pub async fn buffer<B>(mut body: B, limit: usize) -> Result<Buffered, B::Error>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError> + Send + Sync + 'static,
{
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers are not stored
        };
        total += data.len();
        chunks.push(data);
        if total > limit {
            let head = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, B::Error>));
            let tail = body.into_data_stream();
            return Ok(Buffered::TooLarge(Body::from_stream(head.chain(tail))));
        }
    }
    Ok(Buffered::Complete(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => {
            let mut all = BytesMut::with_capacity(total);
            for c in chunks {
                all.extend_from_slice(&c);
            }
            all.freeze()
        }
    }))
}
