//! Length-prefixed frames: how message services put boundaries back on a TCP
//! byte stream.
//!
//! TCP delivers bytes, not messages: one `recv` may return half a message, or the
//! end of one and the start of the next (the course's "sticky packets"). A frame
//! is a 4-byte big-endian payload length followed by the payload, so a reader
//! always knows where a message ends. See `docs/protocol.md`.
//!
//! [`FrameCodec`] plugs into tokio-util's `Framed`. Unlike tokio-util's own
//! `LengthDelimitedCodec`, it never reserves the length a peer announces: the
//! buffer grows only as bytes actually arrive, so a peer that claims 16 MiB and
//! sends ten bytes costs ten bytes, not 16 MiB.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// The default largest payload, 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {received} of {expected} bytes received")]
    Truncated { expected: usize, received: usize },
    /// The underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes length-prefixed frames with a maximum payload size.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A codec accepting payloads up to `max_frame` bytes (at most `u32::MAX`).
    pub fn new(max_frame: usize) -> Self {
        FrameCodec {
            max_frame: max_frame.min(u32::MAX as usize),
        }
    }

    /// The largest payload this codec accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(header.try_into().expect("four bytes")) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < HEADER_LEN + len {
            // Deliberately no `reserve(len)`: see the module docs.
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let expected = match src.get(..HEADER_LEN) {
            Some(header) => {
                HEADER_LEN + u32::from_be_bytes(header.try_into().expect("four bytes")) as usize
            }
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated {
            expected,
            received: src.len(),
        })
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if payload.len() > self.max_frame {
            return Err(FrameError::TooLarge {
                len: payload.len(),
                max: self.max_frame,
            });
        }
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u32(payload.len() as u32);
        dst.extend_from_slice(payload);
        Ok(())
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(payload.as_ref(), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(codec: &mut FrameCodec, frames: &[Vec<u8>]) -> BytesMut {
        let mut wire = BytesMut::new();
        for frame in frames {
            codec.encode(frame.as_slice(), &mut wire).unwrap();
        }
        wire
    }

    /// Feeds `wire` to a decoder in pieces cut at `cuts`, then signals EOF.
    fn decode_in_pieces(
        codec: &mut FrameCodec,
        wire: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        bounds.sort_unstable();
        bounds.push(wire.len());
        for end in bounds {
            buf.extend_from_slice(&wire[start..end.max(start)]);
            start = end.max(start);
            while let Some(frame) = codec.decode(&mut buf)? {
                frames.push(frame.to_vec());
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf)? {
            frames.push(frame.to_vec());
        }
        Ok(frames)
    }

    #[test]
    fn a_frame_split_across_reads_is_reassembled() {
        let mut codec = FrameCodec::default();
        let wire = encode_all(&mut codec, &[b"hello world".to_vec()]);
        for cut in 0..wire.len() {
            let frames = decode_in_pieces(&mut codec, &wire, &[cut]).unwrap();
            assert_eq!(frames, vec![b"hello world".to_vec()], "cut at {cut}");
        }
    }

    #[test]
    fn many_frames_in_one_read_come_out_one_by_one() {
        let mut codec = FrameCodec::default();
        let sent: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; i as usize]).collect();
        let mut wire = encode_all(&mut codec, &sent);
        let mut received = Vec::new();
        while let Some(frame) = codec.decode(&mut wire).unwrap() {
            received.push(frame.to_vec());
        }
        assert_eq!(received, sent);
        assert!(wire.is_empty());
    }

    #[test]
    fn zero_length_frames_are_frames() {
        let mut codec = FrameCodec::default();
        let sent = vec![vec![], b"x".to_vec(), vec![]];
        let wire = encode_all(&mut codec, &sent);
        assert_eq!(wire.len(), 3 * HEADER_LEN + 1);
        assert_eq!(decode_in_pieces(&mut codec, &wire, &[]).unwrap(), sent);
    }

    #[test]
    fn the_maximum_is_accepted_and_one_more_is_rejected() {
        let max = 1000;
        let mut codec = FrameCodec::new(max);
        for len in [max - 1, max] {
            let wire = encode_all(&mut codec, &[vec![7; len]]);
            assert_eq!(
                decode_in_pieces(&mut codec, &wire, &[]).unwrap()[0].len(),
                len
            );
        }
        let mut out = BytesMut::new();
        let too_big = vec![7; max + 1];
        assert!(matches!(
            codec.encode(too_big.as_slice(), &mut out),
            Err(FrameError::TooLarge { len, max: m }) if len == max + 1 && m == max
        ));
        let mut wire = BytesMut::new();
        wire.put_u32((max + 1) as u32);
        assert!(matches!(
            codec.decode(&mut wire),
            Err(FrameError::TooLarge { len, .. }) if len == max + 1
        ));
    }

    #[test]
    fn an_oversized_header_is_rejected_before_its_payload_arrives() {
        let mut codec = FrameCodec::default();
        let mut wire = BytesMut::new();
        wire.put_u32(u32::MAX);
        assert!(matches!(
            codec.decode(&mut wire),
            Err(FrameError::TooLarge { len, .. }) if len == u32::MAX as usize
        ));
    }

    #[test]
    fn a_claimed_length_is_not_allocated_up_front() {
        let mut codec = FrameCodec::default();
        let mut wire = BytesMut::with_capacity(64);
        wire.put_u32(DEFAULT_MAX_FRAME as u32);
        wire.extend_from_slice(b"only ten b");
        assert!(codec.decode(&mut wire).unwrap().is_none());
        assert!(
            wire.capacity() < 1024,
            "capacity grew to {}",
            wire.capacity()
        );
    }

    #[test]
    fn a_truncated_stream_is_a_typed_error() {
        let mut codec = FrameCodec::default();
        let wire = encode_all(&mut codec, &[b"complete".to_vec(), b"cut short".to_vec()]);
        let cut = &wire[..wire.len() - 3];
        let mut buf = BytesMut::from(cut);
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap().unwrap().as_ref(),
            b"complete"
        );
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated {
                expected: 13,
                received: 10
            })
        ));
        let mut half_header = BytesMut::from(&[0u8, 0][..]);
        assert!(matches!(
            codec.decode_eof(&mut half_header),
            Err(FrameError::Truncated {
                expected: 4,
                received: 2
            })
        ));
    }

    proptest! {
        #[test]
        fn any_frames_survive_any_split(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in prop::collection::vec(any::<usize>(), 0..30),
        ) {
            let mut codec = FrameCodec::new(300);
            let wire = encode_all(&mut codec, &frames);
            prop_assert_eq!(decode_in_pieces(&mut codec, &wire, &cuts).unwrap(), frames);
        }
    }
}
