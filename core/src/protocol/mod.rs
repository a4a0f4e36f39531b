//! Framed messages between host and device: postcard + CRC-32 + COBS over
//! any [`embedded_io`] byte stream (UART, semihosting files, pipes).
//!
//! # Frame layout
//!
//! ```text
//!  wire:     COBS( body ‖ crc32_le(body) )  0x00
//!  body:     postcard(Message)             varint tag, then the variant's fields
//!  crc:      CRC-32/ISO-HDLC (zlib's) of `body`, 4 bytes little endian
//! ```
//!
//! * **Delimiter.** Every frame ends with one `0x00`. COBS (consistent
//!   overhead byte stuffing) removes all zeros from the encoded bytes, so a
//!   `0x00` is always a frame boundary and a receiver that lost sync (noise,
//!   a truncated frame, a frame that was too big) is back in sync after the
//!   next `0x00`. Empty frames (two zeros in a row) are skipped silently, so
//!   a sender may start with a `0x00` to flush a half-received frame.
//! * **COBS.** The encoded bytes are blocks `code, data[code-1]`: `code` in
//!   `1..=255` counts the block's bytes including itself; a block with
//!   `code < 255` stands for its data followed by a zero, except the last
//!   block. Overhead: one byte per 254 bytes, at most, plus one.
//! * **Body.** [`Message`] in postcard's wire format: the enum tag is a
//!   varint (the variant's index below), integers are varints (`i32`/`i64`
//!   zigzag), `bool` is one byte, byte slices and strings are a varint length
//!   and the raw bytes (decoded borrowing from the frame buffer, no copy),
//!   fixed arrays are their elements.
//! * **Size.** A frame (encoded, without its delimiter) must fit the
//!   receiver's frame buffer; the device announces its size in
//!   [`Hello::frame_capacity`] and its batch limit in [`Hello::max_batch`].
//!
//! | tag | message | direction | answer |
//! |---|---|---|---|
//! | 0 | [`Message::Ping`] | host → device | `Hello` with the same nonce |
//! | 1 | [`Message::Hello`] | device → host | sent once at start (nonce 0) and per `Ping` |
//! | 2 | [`Message::Classify`] | host → device | `Predictions` or `Error` |
//! | 3 | [`Message::Predictions`] | device → host | |
//! | 4 | [`Message::Error`] | device → host | |
//! | 5 | [`Message::GetStats`] | host → device | `Stats` |
//! | 6 | [`Message::Stats`] | device → host | |
//! | 7 | [`Message::SelfTest`] | host → device | `SelfTestReport` |
//! | 8 | [`Message::SelfTestReport`] | device → host | |
//! | 9 | [`Message::Shutdown`] | host → device | `Bye`, then the device stops |
//! | 10 | [`Message::Bye`] | device → host | |
//! | 11 | [`Message::TrainSetup`] | host → device | `TrainReady` or `Error` |
//! | 12 | [`Message::TrainReady`] | device → host | |
//! | 13 | [`Message::TrainBatch`] | host → device | `Trained`, or `Error` with the run unchanged |
//! | 14 | [`Message::Trained`] | device → host | |
//! | 15 | [`Message::EvalBatch`] | host → device | `Evaluated` or `Error` |
//! | 16 | [`Message::Evaluated`] | device → host | |
//! | 17 | [`Message::ReadParams`] | host → device | `Params` |
//! | 18 | [`Message::Params`] | device → host | |
//!
//! # Errors
//! A frame that does not decode ([`FrameError`]: oversized, bad COBS, too
//! short, bad CRC, unknown tag, bad postcard) is answered by
//! [`Message::Error`] with the matching [`ErrorCode`], and the device goes on
//! with the next frame. So is a well-formed request it cannot serve (wrong
//! image size, batch too large, a device-to-host message).
//!
//! | module | holds |
//! |---|---|
//! | [`message`] | the messages and their fields |
//! | [`frame`] | COBS + CRC framing: sending, decoding, [`FrameReader`] |
//! | [`serve`](mod@serve) | the device loop over a [`Backend`] |
//!
//! Memory: the receiver owns one frame buffer ([`FrameReader`]); sending
//! needs no buffer beyond 255 bytes of stack (COBS is streamed).

mod frame;
mod message;
mod serve;
#[cfg(test)]
mod tests;

pub use frame::{check_crc, encode_to_slice, send, send_raw_body, FrameError, FrameReader, RecvError, SendError};
pub use message::{ErrorCode, Hello, Message, ModelState, Predictions, Stats};
pub use serve::{serve, Backend, Buffers, ServeEnd, TrainRefusal, MAX_OUT};

/// Bumped when a message changes shape (3: `Predictions::confidence`, `Evaluated`'s confidence sums).
pub const PROTOCOL_VERSION: u16 = 3;
/// The frame delimiter.
pub const DELIMITER: u8 = 0;
/// Bytes of CRC at the end of each body.
pub const CRC_LEN: usize = 4;
/// How many variants [`Message`] has; a larger tag is [`FrameError::UnknownTag`].
pub const MESSAGE_TAGS: u32 = 19;
/// Most layer widths a [`Hello`] can announce (inputs + every layer).
pub const MAX_DIMS: usize = crate::spec::MAX_LAYERS + 1;

pub(crate) const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Worst-case encoded size (without the delimiter) of a body of `body_len`
/// bytes: CRC plus one COBS byte per 254, plus one.
pub const fn encoded_len(body_len: usize) -> usize {
    let n = body_len + CRC_LEN;
    n + n / 254 + 1
}

/// Frame buffer a receiver needs for `Classify` batches of `batch` images of
/// `image_len` bytes (generous for the header fields).
pub const fn classify_frame_capacity(batch: usize, image_len: usize) -> usize {
    encoded_len(batch * image_len + 32)
}
