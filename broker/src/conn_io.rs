//! A connection's socket and buffers ([`Io`]), and the cancel-safe steps
//! the connection loop races: read some, write some, flush.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one read takes from the socket.
const READ_CHUNK: usize = 16 * 1024;

/// The socket and its buffers. The stream is not split into halves: one
/// future polls both directions ([`io_ready`]), so a connection needs no
/// shared lock and no extra allocation for the halves.
pub(crate) struct Io<S> {
    pub(crate) stream: S,
    pub(crate) inbuf: BytesMut,
    pub(crate) outbuf: BytesMut,
    pub(crate) needs_flush: bool,
}

impl<S> Io<S> {
    /// A fresh connection's: empty buffers, nothing to flush.
    pub(crate) fn new(stream: S) -> Io<S> {
        Io {
            stream,
            inbuf: BytesMut::new(),
            outbuf: BytesMut::new(),
            needs_flush: false,
        }
    }
}

/// What the socket did.
pub(crate) enum IoReady {
    /// Bytes read (0: the peer closed).
    Read(std::io::Result<usize>),
    /// Bytes of the output buffer written.
    Wrote(std::io::Result<usize>),
    /// The stream flushed (TLS records written out).
    Flushed(std::io::Result<()>),
}

/// Waits until the socket can take a step: read (when `can_read`), write
/// what it can of the output buffer, or flush once that is all written.
/// Each direction is one cancel-safe poll of the one stream, read first; a
/// direction with nothing to do is not polled.
pub(crate) async fn io_ready<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    can_read: bool,
) -> IoReady {
    std::future::poll_fn(|cx| {
        if can_read {
            if let Poll::Ready(r) = poll_read_some(&mut io.stream, &mut io.inbuf, cx) {
                return Poll::Ready(IoReady::Read(r));
            }
        }
        let mut stream = Pin::new(&mut io.stream);
        if !io.outbuf.is_empty() {
            if let Poll::Ready(r) = stream.poll_write(cx, &io.outbuf) {
                if let Ok(n) = r {
                    io.outbuf.advance(n);
                }
                return Poll::Ready(IoReady::Wrote(r));
            }
        } else if io.needs_flush {
            if let Poll::Ready(r) = stream.as_mut().poll_flush(cx) {
                return Poll::Ready(IoReady::Flushed(r));
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads what the socket has (at most [`READ_CHUNK`] bytes) and appends it
/// to `inbuf`. The bytes land in a stack buffer first, so the connection
/// keeps no spare read capacity between reads; a copy of a few KB costs
/// little next to the system call. Cancel-safe: the bytes are appended in
/// the same poll that reads them.
pub(crate) async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    inbuf: &mut BytesMut,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_some(rd, inbuf, cx)).await
}

/// One poll of [`read_some`].
fn poll_read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    inbuf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut buf = ReadBuf::uninit(&mut chunk);
    std::task::ready!(Pin::new(rd).poll_read(cx, &mut buf))?;
    inbuf.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}
