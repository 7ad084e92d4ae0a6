//! [`Codec`]: the `tokio_util::codec` adapter over [`decode`] and [`encode`].

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::decode::{decode, DEFAULT_MAX_PACKET_SIZE};
use crate::encode::encode;
use crate::error::CodecError;
use crate::packet::Packet;

/// An MQTT 3.1.1 codec for `tokio_util::codec::Framed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    /// Largest packet accepted from the peer, fixed header included.
    pub max_packet_size: usize,
}

impl Codec {
    /// A codec that accepts packets of up to `max_packet_size` bytes.
    pub fn new(max_packet_size: usize) -> Codec {
        Codec { max_packet_size }
    }
}

impl Default for Codec {
    fn default() -> Codec {
        Codec::new(DEFAULT_MAX_PACKET_SIZE)
    }
}

impl Decoder for Codec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        Ok(decode(src, self.max_packet_size)?)
    }
}

impl Encoder<&Packet> for Codec {
    type Error = CodecError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode(item, dst)?)
    }
}

impl Encoder<Packet> for Codec {
    type Error = CodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode(&item, dst)?)
    }
}
