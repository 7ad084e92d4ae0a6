//! # midge-protocol
//!
//! Midge's own MQTT 3.1.1 (and 3.1) packet codec: strict, streaming and
//! zero-copy. It knows nothing of brokers or clients.
//!
//! # Layout
//! - [`packet`]: the 14 control packets as types.
//! - [`decode`]: bytes to packets; `Ok(None)` means "need more bytes". The
//!   remaining length is checked against a limit before anything is buffered.
//! - [`encode`]: packets to bytes.
//! - [`codec`]: the `tokio_util::codec` adapter, [`Codec`].
//! - [`topic`]: topic name and filter validation and matching, shared by the
//!   broker and the client.
//! - [`error`]: [`DecodeError`] and [`EncodeError`]; decode errors name the
//!   rule of the specification they enforce.
//! - [`bytestr`]: [`ByteStr`], a UTF-8 string sharing the read buffer.

pub mod bytestr;
pub mod codec;
pub mod decode;
pub mod encode;
pub mod error;
pub mod packet;
pub mod topic;

pub use bytestr::ByteStr;
pub use codec::Codec;
pub use decode::{decode, DEFAULT_MAX_PACKET_SIZE};
pub use encode::{encode, encoded_len};
pub use error::{CodecError, DecodeError, EncodeError};
pub use packet::*;
