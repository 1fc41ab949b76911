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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http::HeaderMap;
    use http_body::Frame;
    use http_body_util::StreamBody;
    use tokio::sync::mpsc;

    use super::*;

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    /// A body whose frames arrive when the test sends them, as an upstream's would.
    fn channel_body() -> (
        mpsc::UnboundedSender<Chunk>,
        StreamBody<impl futures_util::Stream<Item = Chunk> + Unpin>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let frames = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
        (tx, StreamBody::new(Box::pin(frames)))
    }

    fn data(text: &'static str) -> Chunk {
        Ok(Frame::data(Bytes::from_static(text.as_bytes())))
    }

    async fn collect(body: Body) -> Bytes {
        body.collect().await.expect("the body reads").to_bytes()
    }

    #[tokio::test]
    async fn a_body_in_several_chunks_within_the_limit_is_one_whole_body_without_its_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "1".parse().unwrap());
        let frames: Vec<Result<_, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"one "))),
            Ok(Frame::data(Bytes::from_static(b"two "))),
            Ok(Frame::trailers(trailers)),
            Ok(Frame::data(Bytes::from_static(b"three"))),
        ];
        let body = StreamBody::new(stream::iter(frames));
        match buffer(body, 13).await {
            Ok(Buffered::Complete(bytes)) => assert_eq!(&bytes[..], b"one two three"),
            _ => panic!("13 bytes fit a limit of 13"),
        }
    }

    #[tokio::test]
    async fn an_empty_body_is_complete_and_empty() {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![];
        match buffer(StreamBody::new(stream::iter(frames)), 0).await {
            Ok(Buffered::Complete(bytes)) => assert!(bytes.is_empty()),
            _ => panic!("an empty body fits any limit"),
        }
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_handed_back_before_it_ends_and_streams_whole() {
        let (tx, body) = channel_body();
        tx.send(data("0123")).unwrap();
        tx.send(data("4567")).unwrap();
        // The rest is not sent yet: `buffer` must answer without waiting for it.
        let buffered = tokio::time::timeout(std::time::Duration::from_secs(5), buffer(body, 6))
            .await
            .expect("answers as soon as the limit is passed");
        let Ok(Buffered::TooLarge(stream)) = buffered else {
            panic!("8 bytes do not fit a limit of 6");
        };
        tx.send(data("89")).unwrap();
        drop(tx);
        assert_eq!(&collect(stream).await[..], b"0123456789");
    }

    #[tokio::test]
    async fn a_body_that_fails_while_read_is_an_error() {
        let (tx, body) = channel_body();
        tx.send(data("01")).unwrap();
        tx.send(Err(std::io::Error::other("the peer went away")))
            .unwrap();
        match buffer(body, 1024).await {
            Err(e) => assert_eq!(e.to_string(), "the peer went away"),
            Ok(_) => panic!("a failed read is not a body"),
        }
    }
}
