//! The encrypted channel under an exec session: a Noise XX handshake, then
//! Noise transport messages, each carried in one frame of the frame codec.
//!
//! Every primitive is snow's (X25519, AES-256-GCM, BLAKE2s; the cipher runs
//! on ring's implementation through snow's `ring-accelerated`); this module
//! only moves its messages and says what failed. The prologue names the
//! protocol version, so two peers that speak different versions fail the
//! handshake instead of misreading each other. Transport nonces count up in
//! each direction, so a frame that is replayed, reordered, dropped or changed
//! fails authentication and ends the channel.

use bytes::{Bytes, BytesMut};
use std::task::Poll;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use super::keys::{KeyPair, PublicKey};
use super::wire::{MAX_NOISE_MESSAGE, TAG_LEN, WireError};
use crate::frame::{FrameCodec, FrameError, HEADER_LEN};

/// The Noise protocol: XX pattern, Curve25519, AES-256-GCM, BLAKE2s.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_AESGCM_BLAKE2s";

/// How many queued bytes a sender lets build up before it stops producing
/// more (reading stdin, or a command's output) until they are written.
pub const MAX_BACKLOG: usize = 256 * 1024;

/// Mixed into the handshake: both sides must agree on it.
const PROLOGUE: &[u8] = b"sockit-exec/1";

/// Why the channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer closed the connection.
    #[error("the connection closed")]
    Closed,
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A handshake message was malformed, replayed or not for this session.
    #[error("handshake failed: {0}")]
    Handshake(snow::Error),
    /// A transport message failed authentication: it was changed, replayed or
    /// reordered on the way.
    #[error("a message failed authentication (tampered with, replayed or reordered)")]
    Tampered,
    /// The peer presented a static key the caller does not accept.
    #[error("{0}")]
    KeyRefused(String),
    /// A decrypted message is not a valid message.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
}

/// An established channel: encrypts what it sends, authenticates and
/// decrypts what it receives.
pub struct Channel<S> {
    framed: Framed<S, FrameCodec>,
    transport: snow::TransportState,
    remote: PublicKey,
}

impl<S> std::fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

fn builder(keys: &KeyPair) -> snow::Builder<'_> {
    snow::Builder::new(NOISE_PARAMS.parse().expect("valid Noise parameters"))
        .prologue(PROLOGUE)
        .and_then(|b| b.local_private_key(keys.private()))
        .expect("a prologue and a 32-byte key are accepted")
}

async fn next_frame<S: AsyncRead + Unpin>(
    framed: &mut Framed<S, FrameCodec>,
) -> Result<BytesMut, ChannelError> {
    match framed.next().await {
        Some(frame) => Ok(frame?),
        None => Err(ChannelError::Closed),
    }
}

/// Writes one handshake message carrying no payload.
async fn write_handshake<S: AsyncWrite + Unpin>(
    framed: &mut Framed<S, FrameCodec>,
    state: &mut snow::HandshakeState,
    buffer: &mut [u8],
    flush: bool,
) -> Result<(), ChannelError> {
    let len = state
        .write_message(&[], buffer)
        .map_err(ChannelError::Handshake)?;
    if flush {
        framed.send(&buffer[..len]).await?;
    } else {
        framed.feed(&buffer[..len]).await?;
    }
    Ok(())
}

fn read_handshake(
    state: &mut snow::HandshakeState,
    message: &[u8],
    buffer: &mut [u8],
) -> Result<(), ChannelError> {
    state
        .read_message(message, buffer)
        .map(drop)
        .map_err(ChannelError::Handshake)
}

fn remote_key(state: &snow::HandshakeState) -> PublicKey {
    state
        .get_remote_static()
        .and_then(PublicKey::from_bytes)
        .expect("XX reveals a 32-byte static key")
}

impl<S: AsyncRead + AsyncWrite + Unpin> Channel<S> {
    /// Runs the client side of the handshake. `accept_server` sees the
    /// server's static key before the client reveals its own, and may refuse
    /// it with a message (a changed pinned key).
    ///
    /// The last handshake message is queued, not sent: the caller's first
    /// message goes out in the same write (see [`Channel::send`]).
    ///
    /// # Errors
    /// The handshake fails or the server key is refused.
    pub async fn connect(
        stream: S,
        keys: &KeyPair,
        accept_server: impl FnOnce(&PublicKey) -> Result<(), String>,
    ) -> Result<Channel<S>, ChannelError> {
        let mut framed = Framed::new(stream, FrameCodec::new(MAX_NOISE_MESSAGE));
        let mut state = builder(keys)
            .build_initiator()
            .map_err(ChannelError::Handshake)?;
        let mut buffer = vec![0; MAX_NOISE_MESSAGE];
        write_handshake(&mut framed, &mut state, &mut buffer, true).await?;
        let message = next_frame(&mut framed).await?;
        read_handshake(&mut state, &message, &mut buffer)?;
        accept_server(&remote_key(&state)).map_err(ChannelError::KeyRefused)?;
        write_handshake(&mut framed, &mut state, &mut buffer, false).await?;
        Channel::established(framed, state)
    }

    /// Runs the server side of the handshake. The client's key is only
    /// known, not yet judged: the caller decides what to do with
    /// [`Channel::remote`].
    ///
    /// # Errors
    /// The handshake fails.
    pub async fn accept(stream: S, keys: &KeyPair) -> Result<Channel<S>, ChannelError> {
        let mut framed = Framed::new(stream, FrameCodec::new(MAX_NOISE_MESSAGE));
        let mut state = builder(keys)
            .build_responder()
            .map_err(ChannelError::Handshake)?;
        let mut buffer = vec![0; MAX_NOISE_MESSAGE];
        let message = next_frame(&mut framed).await?;
        read_handshake(&mut state, &message, &mut buffer)?;
        write_handshake(&mut framed, &mut state, &mut buffer, true).await?;
        let message = next_frame(&mut framed).await?;
        read_handshake(&mut state, &message, &mut buffer)?;
        Channel::established(framed, state)
    }

    /// The channel after a completed handshake.
    fn established(
        framed: Framed<S, FrameCodec>,
        state: snow::HandshakeState,
    ) -> Result<Channel<S>, ChannelError> {
        let remote = remote_key(&state);
        let transport = state
            .into_transport_mode()
            .map_err(ChannelError::Handshake)?;
        Ok(Channel {
            framed,
            transport,
            remote,
        })
    }

    /// The peer's static public key, proven by the handshake.
    pub fn remote(&self) -> PublicKey {
        self.remote
    }

    /// Encrypts and sends one message body (at most one Noise message).
    ///
    /// # Errors
    /// The connection fails.
    pub async fn send(&mut self, body: &[u8]) -> Result<(), ChannelError> {
        self.queue(body)?;
        self.flush().await
    }

    /// Encrypts one message body into the write buffer without sending it;
    /// [`Channel::flush`] or [`Channel::recv_or_drain`] sends it.
    ///
    /// # Errors
    /// The body does not fit one Noise message.
    pub fn queue(&mut self, body: &[u8]) -> Result<(), ChannelError> {
        // Encrypt straight into the frame's place in the write buffer.
        let out = self.framed.write_buffer_mut();
        let start = out.len();
        out.resize(start + HEADER_LEN + body.len() + TAG_LEN, 0);
        match self
            .transport
            .write_message(body, &mut out[start + HEADER_LEN..])
        {
            Ok(len) => {
                out.truncate(start + HEADER_LEN + len);
                out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(WireError::TooLarge(body.len()).into())
            }
        }
    }

    /// Bytes queued and not yet written to the connection.
    pub fn backlog(&self) -> usize {
        self.framed.write_buffer().len()
    }

    /// Waits for the next message while writing what is queued, so a peer
    /// that is itself blocked writing to us is always read: two peers that
    /// both send a lot at once cannot deadlock. Returns `None` when the
    /// queue has been written out before a message arrived. With `read`
    /// false it only writes (for a caller that cannot take a message now).
    /// Cancel-safe.
    ///
    /// # Errors
    /// As [`Channel::recv`], or the write fails.
    pub async fn recv_or_drain(&mut self, read: bool) -> Result<Option<Bytes>, ChannelError> {
        let frame = std::future::poll_fn(|cx| {
            if self.backlog() > 0 {
                match SinkExt::<&[u8]>::poll_flush_unpin(&mut self.framed, cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(None)),
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(ChannelError::from(err))),
                    Poll::Pending => {}
                }
            }
            if !read {
                return Poll::Pending;
            }
            match self.framed.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Ok(Some(frame))),
                Poll::Ready(Some(Err(err))) => Poll::Ready(Err(err.into())),
                Poll::Ready(None) => Poll::Ready(Err(ChannelError::Closed)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        frame.map(|frame| self.decrypt(&frame)).transpose()
    }

    /// Sends what is queued: after [`Channel::connect`], the last handshake
    /// message, when the client's first move is to wait for the server.
    ///
    /// # Errors
    /// The connection fails.
    pub async fn flush(&mut self) -> Result<(), ChannelError> {
        SinkExt::<&[u8]>::flush(&mut self.framed).await?;
        Ok(())
    }

    /// Receives and decrypts one message body. Cancel-safe: a frame is either
    /// fully taken and decrypted or left in the buffer.
    ///
    /// # Errors
    /// [`ChannelError::Closed`] at a clean end, [`ChannelError::Tampered`]
    /// when a frame fails authentication.
    pub async fn recv(&mut self) -> Result<Bytes, ChannelError> {
        let frame = next_frame(&mut self.framed).await?;
        self.decrypt(&frame)
    }

    /// Authenticates and decrypts one transport message.
    fn decrypt(&mut self, frame: &[u8]) -> Result<Bytes, ChannelError> {
        let mut plain = BytesMut::zeroed(frame.len());
        let len = self
            .transport
            .read_message(frame, &mut plain)
            .map_err(|_| ChannelError::Tampered)?;
        plain.truncate(len);
        Ok(plain.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_sides_learn_each_others_key_and_exchange_messages() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client_keys = KeyPair::generate();
        let server_keys = KeyPair::generate();
        let server_public = server_keys.public();
        let server = tokio::spawn(async move {
            let mut channel = Channel::accept(b, &server_keys).await.unwrap();
            let got = channel.recv().await.unwrap();
            channel.send(&got.repeat(2)).await.unwrap();
            channel.remote()
        });
        let mut channel = Channel::connect(a, &client_keys, |key| {
            assert_eq!(*key, server_public);
            Ok(())
        })
        .await
        .unwrap();
        channel.send(b"ping").await.unwrap();
        assert_eq!(&channel.recv().await.unwrap()[..], b"pingping");
        assert_eq!(server.await.unwrap(), client_keys.public());
    }

    #[tokio::test]
    async fn a_refused_server_key_stops_before_the_client_reveals_its_key() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server_keys = KeyPair::generate();
        let server = tokio::spawn(async move { Channel::accept(b, &server_keys).await.map(drop) });
        let err = Channel::connect(a, &KeyPair::generate(), |_| Err("no".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, ChannelError::KeyRefused(_)), "{err}");
        // The client dropped the stream without sending its third message.
        assert!(matches!(server.await.unwrap(), Err(ChannelError::Closed)));
    }
}
