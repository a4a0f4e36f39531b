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
//!
//! # Errors
//! A frame that does not decode ([`FrameError`]: oversized, bad COBS, too
//! short, bad CRC, unknown tag, bad postcard) is answered by
//! [`Message::Error`] with the matching [`ErrorCode`], and the device goes on
//! with the next frame. So is a well-formed request it cannot serve (wrong
//! image size, batch too large, a device-to-host message).
//!
//! Memory: the receiver owns one frame buffer ([`FrameReader`]); sending
//! needs no buffer beyond 255 bytes of stack (COBS is streamed).

use core::fmt::Write as _;

use embedded_io::{Read, Write};
use serde::{Deserialize, Serialize};

/// Bumped when a message changes shape.
pub const PROTOCOL_VERSION: u16 = 1;
/// The frame delimiter.
pub const DELIMITER: u8 = 0;
/// Bytes of CRC at the end of each body.
pub const CRC_LEN: usize = 4;
/// How many variants [`Message`] has; a larger tag is [`FrameError::UnknownTag`].
pub const MESSAGE_TAGS: u32 = 11;
/// Most layer widths a [`Hello`] can announce.
pub const MAX_DIMS: usize = 4;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

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

/// Every message of the protocol, both directions (see the module docs).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Message<'a> {
    /// Asks the device for a [`Hello`] carrying `nonce`; also a resync point.
    Ping {
        nonce: u32,
    },
    #[serde(borrow)]
    Hello(Hello<'a>),
    /// `images` is `n × IN` raw pixels (`0..=255`), row-major.
    Classify {
        seq: u32,
        want_logits: bool,
        images: &'a [u8],
    },
    #[serde(borrow)]
    Predictions(Predictions<'a>),
    /// `seq` is the request's when known, else 0.
    Error {
        code: ErrorCode,
        seq: u32,
        detail: &'a str,
    },
    GetStats,
    Stats(Stats),
    /// Runs the device's built-in checks (golden int8 values, kernels).
    SelfTest,
    SelfTestReport {
        passed: u32,
        failed: u32,
        detail: &'a str,
    },
    Shutdown,
    Bye(Stats),
}

/// The device's identity and limits.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello<'a> {
    pub nonce: u32,
    pub protocol: u16,
    pub fw_version: &'a str,
    /// Layer widths, input first; `dims[..n_dims]` are used.
    pub n_dims: u8,
    pub dims: [u32; MAX_DIMS],
    /// CRC of the model's `.q8` payload (as in its file header).
    pub model_crc: u32,
    /// Most images per `Classify`.
    pub max_batch: u32,
    /// Most encoded bytes per frame the device can receive.
    pub frame_capacity: u32,
    /// Whether `instructions` fields count anything (0 otherwise).
    pub counts_instructions: bool,
}

impl Hello<'_> {
    pub fn dims(&self) -> &[u32] {
        &self.dims[..(self.n_dims as usize).min(MAX_DIMS)]
    }
}

/// The answer to one `Classify`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Predictions<'a> {
    pub seq: u32,
    /// One predicted class per image.
    pub classes: &'a [u8],
    /// `classes.len() × OUT` int32 logits, little endian; empty unless the
    /// request had `want_logits`.
    pub logits: &'a [u8],
    /// Instructions spent in the inferences of this batch (0 if not counted).
    pub instructions: u64,
}

impl Predictions<'_> {
    /// Logit `j` of image `i` (needs `want_logits`), for `out` classes.
    pub fn logit(&self, i: usize, j: usize, out: usize) -> Option<i32> {
        let o = 4 * (i * out + j);
        let b = self.logits.get(o..o + 4)?;
        Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Counters the device keeps since boot.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    pub frames_ok: u32,
    pub frames_bad: u32,
    pub images: u64,
    /// Instructions spent in inference (not in I/O).
    pub instructions: u64,
}

/// Why a request failed; sent in [`Message::Error`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorCode {
    /// The frame did not fit the device's frame buffer; skipped to the next `0x00`.
    Oversized,
    /// Bad COBS (typically a frame cut short).
    Cobs,
    /// Fewer bytes than a tag and a CRC.
    TooShort,
    BadCrc,
    UnknownTag,
    /// The CRC matched, but the body is not a valid message.
    Decode,
    /// `images.len()` is not a multiple of the input size, or is zero.
    BadImageSize,
    BatchTooLarge,
    /// A message the device does not accept (device → host ones).
    Unexpected,
}

impl From<FrameError> for ErrorCode {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Oversized { .. } => ErrorCode::Oversized,
            FrameError::Cobs => ErrorCode::Cobs,
            FrameError::TooShort { .. } => ErrorCode::TooShort,
            FrameError::BadCrc { .. } => ErrorCode::BadCrc,
            FrameError::UnknownTag { .. } => ErrorCode::UnknownTag,
            FrameError::Decode => ErrorCode::Decode,
        }
    }
}

/// A received frame that is not a message. The receiver stays in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// More than `capacity` bytes before the delimiter (they were dropped).
    Oversized {
        capacity: u32,
    },
    /// A COBS block runs past the end of the frame.
    Cobs,
    TooShort {
        len: u32,
    },
    BadCrc {
        stored: u32,
        computed: u32,
    },
    UnknownTag {
        tag: u32,
    },
    Decode,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Oversized { capacity } => write!(f, "frame larger than the {capacity}-byte buffer"),
            FrameError::Cobs => write!(f, "bad COBS encoding (frame cut short?)"),
            FrameError::TooShort { len } => write!(f, "frame of {len} bytes is too short"),
            FrameError::BadCrc { stored, computed } => {
                write!(f, "CRC mismatch: frame says {stored:#010x}, body has {computed:#010x}")
            }
            FrameError::UnknownTag { tag } => write!(f, "unknown message tag {tag}"),
            FrameError::Decode => write!(f, "body is not a valid message"),
        }
    }
}

/// Failure to receive a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError<E> {
    Io(E),
    /// The stream ended (possibly inside a frame).
    Eof,
    /// A malformed frame; the next `recv` reads the frame after it.
    Frame(FrameError),
}

/// Failure to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError<E> {
    Io(E),
    /// The message does not serialize (cannot happen for [`Message`]).
    Encode,
}

impl<E: core::fmt::Debug> core::fmt::Display for RecvError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecvError::Io(e) => write!(f, "I/O error: {e:?}"),
            RecvError::Eof => write!(f, "end of stream"),
            RecvError::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl<E: core::fmt::Debug> core::fmt::Display for SendError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SendError::Io(e) => write!(f, "I/O error: {e:?}"),
            SendError::Encode => write!(f, "message does not serialize"),
        }
    }
}

// ---------------------------------------------------------------- encoding

/// postcard flavor: CRC the body and COBS-encode it straight into a writer,
/// one block (≤ 255 bytes) at a time.
struct FrameSink<'w, W: Write> {
    w: &'w mut W,
    crc: crc::Digest<'static, u32>,
    /// `blk[0]` is the code byte of the block being filled.
    blk: [u8; 255],
    n: usize,
    err: Option<W::Error>,
}

impl<W: Write> FrameSink<'_, W> {
    fn emit(&mut self) -> Result<(), W::Error> {
        self.blk[0] = (self.n + 1) as u8;
        let r = self.w.write_all(&self.blk[..self.n + 1]);
        self.n = 0;
        r
    }

    fn cobs_push(&mut self, b: u8) -> Result<(), W::Error> {
        if b == 0 {
            self.emit()
        } else {
            self.n += 1;
            self.blk[self.n] = b;
            if self.n == 254 {
                self.emit()
            } else {
                Ok(())
            }
        }
    }

    fn push_raw(&mut self, b: u8) -> postcard::Result<()> {
        if self.err.is_some() {
            return Err(postcard::Error::SerializeBufferFull);
        }
        if let Err(e) = self.cobs_push(b) {
            self.err = Some(e);
            return Err(postcard::Error::SerializeBufferFull);
        }
        Ok(())
    }

    fn end(mut self) -> Result<(), SendError<W::Error>> {
        if let Some(e) = self.err.take() {
            return Err(SendError::Io(e));
        }
        let crc = self.crc.clone().finalize().to_le_bytes();
        for b in crc {
            self.cobs_push(b).map_err(SendError::Io)?;
        }
        self.emit().map_err(SendError::Io)?;
        self.w.write_all(&[DELIMITER]).map_err(SendError::Io)
    }
}

impl<W: Write> postcard::ser_flavors::Flavor for &mut FrameSink<'_, W> {
    type Output = ();
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.crc.update(&[data]);
        self.push_raw(data)
    }
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.crc.update(data);
        data.iter().try_for_each(|&b| self.push_raw(b))
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Writes `msg` as one frame (module docs) and flushes the writer.
pub fn send<W: Write>(w: &mut W, msg: &Message<'_>) -> Result<(), SendError<W::Error>> {
    send_body(w, |sink| postcard::serialize_with_flavor(msg, sink))?;
    w.flush().map_err(SendError::Io)
}

fn send_body<W: Write>(
    w: &mut W,
    body: impl FnOnce(&mut FrameSink<'_, W>) -> postcard::Result<()>,
) -> Result<(), SendError<W::Error>> {
    let mut sink = FrameSink { w, crc: CRC.digest(), blk: [0; 255], n: 0, err: None };
    let r = body(&mut sink);
    if let Some(e) = sink.err.take() {
        return Err(SendError::Io(e));
    }
    r.map_err(|_| SendError::Encode)?;
    sink.end()
}

/// Writes an arbitrary body (no message check) as one frame: for tests of
/// the receiver's error paths (e.g. an unknown tag with a valid CRC).
pub fn send_raw_body<W: Write>(w: &mut W, body: &[u8]) -> Result<(), SendError<W::Error>> {
    send_body(w, |mut sink| {
        use postcard::ser_flavors::Flavor;
        sink.try_extend(body)
    })?;
    w.flush().map_err(SendError::Io)
}

/// Encodes `msg` into `out` (a whole frame, delimiter included); returns its length.
pub fn encode_to_slice(msg: &Message<'_>, out: &mut [u8]) -> Result<usize, SendError<embedded_io::SliceWriteError>> {
    let total = out.len();
    let mut w: &mut [u8] = out;
    send(&mut w, msg)?;
    Ok(total - w.len())
}

// ---------------------------------------------------------------- decoding

/// Decodes COBS in place; returns the decoded length.
fn cobs_decode_in_place(buf: &mut [u8]) -> Result<usize, FrameError> {
    let (mut r, mut w) = (0usize, 0usize);
    while r < buf.len() {
        let code = buf[r] as usize;
        if code == 0 {
            return Err(FrameError::Cobs);
        }
        r += 1;
        let end = r + code - 1;
        if end > buf.len() {
            return Err(FrameError::Cobs);
        }
        buf.copy_within(r..end, w);
        w += code - 1;
        r = end;
        if code < 255 && r < buf.len() {
            buf[w] = 0;
            w += 1;
        }
    }
    Ok(w)
}

/// Checks a decoded frame (body ‖ CRC) and returns the body.
pub fn check_crc(decoded: &[u8]) -> Result<&[u8], FrameError> {
    if decoded.len() < CRC_LEN + 1 {
        return Err(FrameError::TooShort { len: decoded.len() as u32 });
    }
    let (body, c) = decoded.split_at(decoded.len() - CRC_LEN);
    let stored = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    let computed = CRC.checksum(body);
    if stored != computed {
        return Err(FrameError::BadCrc { stored, computed });
    }
    Ok(body)
}

impl<'a> Message<'a> {
    /// Parses a frame body (after COBS and CRC).
    pub fn from_body(body: &'a [u8]) -> Result<Self, FrameError> {
        // The tag is the first varint; check it ourselves to report it.
        let mut tag: u32 = 0;
        for (i, &b) in body.iter().enumerate().take(5) {
            tag |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        if tag >= MESSAGE_TAGS {
            return Err(FrameError::UnknownTag { tag });
        }
        match postcard::take_from_bytes::<Message<'a>>(body) {
            Ok((m, [])) => Ok(m),
            _ => Err(FrameError::Decode),
        }
    }

    /// Decodes one whole frame in place (with or without its delimiter).
    pub fn decode_frame(frame: &'a mut [u8]) -> Result<Self, FrameError> {
        let len = frame.len() - usize::from(frame.last() == Some(&DELIMITER));
        let frame = &mut frame[..len];
        let n = cobs_decode_in_place(frame)?;
        Message::from_body(check_crc(&frame[..n])?)
    }
}

/// Splits a byte stream into frames, in a caller-owned buffer that holds one
/// whole encoded frame (plus whatever was read ahead).
pub struct FrameReader<'b> {
    buf: &'b mut [u8],
    /// Start of the unconsumed bytes.
    start: usize,
    /// How far `buf[start..]` has been searched for a delimiter.
    scan: usize,
    /// End of the bytes read.
    end: usize,
    /// Dropping an oversized frame until its delimiter.
    discarding: bool,
}

impl<'b> FrameReader<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        FrameReader { buf, start: 0, scan: 0, end: 0, discarding: false }
    }

    /// Most encoded bytes a frame may have.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes read from the stream but not yet consumed (the start of the next
    /// frames), e.g. to hand them to another reader.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads up to the next delimiter and decodes the frame. Malformed
    /// frames give [`RecvError::Frame`] and are consumed, so calling again
    /// reads the next one.
    pub fn recv<R: Read>(&mut self, r: &mut R) -> Result<Message<'_>, RecvError<R::Error>> {
        let (a, b) = self.next_frame(r)?;
        let frame = &mut self.buf[a..b];
        let n = cobs_decode_in_place(frame).map_err(RecvError::Frame)?;
        let body = check_crc(&self.buf[a..a + n]).map_err(RecvError::Frame)?;
        Message::from_body(body).map_err(RecvError::Frame)
    }

    /// Finds the next non-empty frame; returns its range in `buf`.
    fn next_frame<R: Read>(&mut self, r: &mut R) -> Result<(usize, usize), RecvError<R::Error>> {
        loop {
            if let Some(z) = self.buf[self.scan..self.end].iter().position(|&b| b == DELIMITER) {
                let (a, b) = (self.start, self.scan + z);
                self.start = b + 1;
                self.scan = self.start;
                if self.discarding {
                    self.discarding = false;
                    return Err(RecvError::Frame(FrameError::Oversized { capacity: self.buf.len() as u32 }));
                }
                if a == b {
                    continue;
                }
                return Ok((a, b));
            }
            self.scan = self.end;
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.scan = self.end;
                    self.start = 0;
                } else {
                    // A whole buffer without a delimiter: drop it all.
                    self.discarding = true;
                    self.start = 0;
                    self.scan = 0;
                    self.end = 0;
                }
            }
            let n = r.read(&mut self.buf[self.end..]).map_err(RecvError::Io)?;
            if n == 0 {
                return Err(RecvError::Eof);
            }
            self.end += n;
        }
    }
}

// ---------------------------------------------------------------- device loop

/// What the device loop needs from the firmware (or a host-side stand-in).
pub trait Backend {
    fn fw_version(&self) -> &str;
    /// Layer widths, input first (at most [`MAX_DIMS`]).
    fn dims(&self) -> &[u32];
    fn model_crc(&self) -> u32;
    /// Classifies one image of `dims()[0]` pixels; fills `logits` (`OUT`
    /// long) and returns the predicted class.
    fn classify(&mut self, pixels: &[u8], logits: &mut [i32]) -> usize;
    /// A free-running instruction counter, if the platform has one.
    fn instructions(&mut self) -> Option<u64> {
        None
    }
    /// Built-in checks; writes a summary to `detail`. Returns (passed, failed).
    fn self_test(&mut self, detail: &mut dyn core::fmt::Write) -> (u32, u32) {
        let _ = detail.write_str("no self tests");
        (0, 0)
    }
}

/// Most output classes the device loop supports.
pub const MAX_OUT: usize = 16;

/// Caller-owned memory of [`serve`].
pub struct Buffers<'b> {
    /// The receive frame buffer (at least [`classify_frame_capacity`] for
    /// the batches you want).
    pub rx: &'b mut [u8],
    /// One byte per image of a batch.
    pub classes: &'b mut [u8],
    /// `4 × OUT` bytes per image of a batch.
    pub logits: &'b mut [u8],
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd<E> {
    /// The host sent `Shutdown` (answered with `Bye`).
    Shutdown(Stats),
    /// The input ended.
    Eof(Stats),
    Io(E),
}

/// The device side: sends a `Hello`, then answers requests until `Shutdown`,
/// end of input or an I/O error. Malformed frames and bad requests are
/// answered with `Error` and do not stop it.
pub fn serve<T: Read + Write, B: Backend>(io: &mut T, dev: &mut B, bufs: Buffers<'_>) -> ServeEnd<T::Error> {
    let Buffers { rx, classes, logits } = bufs;
    let dims = dev.dims();
    let (n_in, n_out) = (dims[0] as usize, dims[dims.len() - 1] as usize);
    assert!(n_out <= MAX_OUT && dims.len() <= MAX_DIMS);
    let frame_capacity = rx.len();
    // Largest batch whose frame surely fits.
    let mut max_batch = classes.len().min(logits.len() / (4 * n_out));
    while max_batch > 0 && classify_frame_capacity(max_batch, n_in) > frame_capacity {
        max_batch -= 1;
    }
    let counts = dev.instructions().is_some();
    let mut reader = FrameReader::new(rx);
    let mut stats = Stats::default();
    let hello = |dev: &B, nonce| {
        let d = dev.dims();
        let mut dims = [0u32; MAX_DIMS];
        dims[..d.len()].copy_from_slice(d);
        Hello {
            nonce,
            protocol: PROTOCOL_VERSION,
            fw_version: "",
            n_dims: d.len() as u8,
            dims,
            model_crc: dev.model_crc(),
            max_batch: max_batch as u32,
            frame_capacity: frame_capacity as u32,
            counts_instructions: counts,
        }
    };
    macro_rules! reply {
        ($m:expr) => {
            if let Err(e) = send(io, &$m) {
                match e {
                    SendError::Io(e) => return ServeEnd::Io(e),
                    SendError::Encode => {}
                }
            }
        };
    }
    reply!(Message::Hello(Hello { fw_version: dev.fw_version(), ..hello(dev, 0) }));
    loop {
        let msg = match reader.recv(io) {
            Ok(m) => m,
            Err(RecvError::Io(e)) => return ServeEnd::Io(e),
            Err(RecvError::Eof) => return ServeEnd::Eof(stats),
            Err(RecvError::Frame(e)) => {
                stats.frames_bad += 1;
                let mut detail = heapless::String::<80>::new();
                let _ = write!(detail, "{e}");
                reply!(Message::Error { code: e.into(), seq: 0, detail: &detail });
                continue;
            }
        };
        stats.frames_ok += 1;
        match msg {
            Message::Ping { nonce } => {
                reply!(Message::Hello(Hello { fw_version: dev.fw_version(), ..hello(dev, nonce) }))
            }
            Message::Classify { seq, want_logits, images } => {
                let n = images.len() / n_in;
                if images.is_empty() || !images.len().is_multiple_of(n_in) {
                    let mut detail = heapless::String::<80>::new();
                    let _ = write!(detail, "{} bytes is not a multiple of {n_in}", images.len());
                    reply!(Message::Error { code: ErrorCode::BadImageSize, seq, detail: &detail });
                    continue;
                }
                if n > max_batch {
                    let mut detail = heapless::String::<80>::new();
                    let _ = write!(detail, "{n} images, at most {max_batch} per batch");
                    reply!(Message::Error { code: ErrorCode::BatchTooLarge, seq, detail: &detail });
                    continue;
                }
                let mut out = [0i32; MAX_OUT];
                let t0 = dev.instructions();
                for (i, img) in images.chunks_exact(n_in).enumerate() {
                    classes[i] = dev.classify(img, &mut out[..n_out]) as u8;
                    for (j, l) in out[..n_out].iter().enumerate() {
                        let o = 4 * (i * n_out + j);
                        logits[o..o + 4].copy_from_slice(&l.to_le_bytes());
                    }
                }
                let spent = match (t0, dev.instructions()) {
                    (Some(a), Some(b)) => b.wrapping_sub(a),
                    _ => 0,
                };
                stats.images += n as u64;
                stats.instructions += spent;
                let nl = if want_logits { 4 * n * n_out } else { 0 };
                reply!(Message::Predictions(Predictions {
                    seq,
                    classes: &classes[..n],
                    logits: &logits[..nl],
                    instructions: spent
                }));
            }
            Message::GetStats => reply!(Message::Stats(stats)),
            Message::SelfTest => {
                let mut detail = heapless::String::<200>::new();
                let (passed, failed) = dev.self_test(&mut detail);
                reply!(Message::SelfTestReport { passed, failed, detail: &detail });
            }
            Message::Shutdown => {
                reply!(Message::Bye(stats));
                return ServeEnd::Shutdown(stats);
            }
            Message::Hello(_)
            | Message::Predictions(_)
            | Message::Error { .. }
            | Message::Stats(_)
            | Message::SelfTestReport { .. }
            | Message::Bye(_) => {
                reply!(Message::Error {
                    code: ErrorCode::Unexpected,
                    seq: 0,
                    detail: "device-to-host message sent to the device"
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// An in-memory duplex pipe: reads `input` at most `chunk` bytes at a
    /// time, collects what is written.
    struct Pipe {
        input: Vec<u8>,
        pos: usize,
        chunk: usize,
        output: Vec<u8>,
    }

    impl Pipe {
        fn new(input: Vec<u8>, chunk: usize) -> Self {
            Pipe { input, pos: 0, chunk, output: Vec::new() }
        }
    }

    impl embedded_io::ErrorType for Pipe {
        type Error = core::convert::Infallible;
    }
    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(self.chunk).min(self.input.len() - self.pos);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn frame(msg: &Message<'_>) -> Vec<u8> {
        let mut p = Pipe::new(Vec::new(), 1);
        send(&mut p, msg).unwrap();
        p.output
    }

    fn raw_frame(body: &[u8]) -> Vec<u8> {
        let mut p = Pipe::new(Vec::new(), 1);
        send_raw_body(&mut p, body).unwrap();
        p.output
    }

    /// Reference COBS encoder (the textbook one) to check ours against.
    fn cobs_ref(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        let mut code_at = 0;
        let mut code = 1u8;
        for &b in data {
            if b == 0 {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            } else {
                out.push(b);
                code += 1;
                if code == 255 {
                    out[code_at] = code;
                    code_at = out.len();
                    out.push(0);
                    code = 1;
                }
            }
        }
        out[code_at] = code;
        out
    }

    use std::vec;

    #[test]
    fn crc_is_format_crc() {
        assert_eq!(CRC.checksum(b"123456789"), crate::format::crc32(b"123456789"));
    }

    #[test]
    fn cobs_matches_reference_and_roundtrips() {
        let mut rng = crate::rng::Rng::new(7);
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1; 253],
            vec![1; 254],
            vec![1; 255],
            vec![1; 508],
            vec![1; 509],
        ];
        for len in [1usize, 2, 100, 254, 255, 256, 600, 1000] {
            for zero_every in [0u32, 2, 10, 300] {
                cases.push(
                    (0..len)
                        .map(|_| {
                            let r = rng.next_u32();
                            if zero_every > 0 && r.is_multiple_of(zero_every) {
                                0
                            } else {
                                (r >> 8) as u8 | 1
                            }
                        })
                        .collect(),
                );
            }
        }
        for data in cases {
            let f = raw_frame(&data);
            let mut body_crc = data.clone();
            body_crc.extend_from_slice(&CRC.checksum(&data).to_le_bytes());
            let mut expect = cobs_ref(&body_crc);
            // Our encoder may end in an extra empty block (code 1) after a
            // 255 block; both decode the same.
            let enc = &f[..f.len() - 1];
            if enc.len() == expect.len() + 1 {
                expect.push(1);
            }
            assert_eq!(enc, &expect[..], "len {}", data.len());
            assert_eq!(*f.last().unwrap(), 0);
            assert!(!enc.contains(&0));
            assert!(enc.len() <= encoded_len(data.len()));
            let mut buf = enc.to_vec();
            let n = cobs_decode_in_place(&mut buf).unwrap();
            assert_eq!(&buf[..n], &body_crc[..]);
        }
    }

    fn sample_messages() -> Vec<Message<'static>> {
        static IMAGES: [u8; 8] = [0, 1, 2, 0, 255, 0, 0, 7];
        static LOGITS: [u8; 8] = [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        vec![
            Message::Ping { nonce: 0xdead_beef },
            Message::Hello(Hello {
                nonce: 1,
                protocol: PROTOCOL_VERSION,
                fw_version: "tailor-fw 0.1",
                n_dims: 4,
                dims: [784, 512, 512, 10],
                model_crc: 0x1234_5678,
                max_batch: 64,
                frame_capacity: 60_000,
                counts_instructions: true,
            }),
            Message::Classify { seq: 3, want_logits: true, images: &IMAGES },
            Message::Predictions(Predictions { seq: 3, classes: &[1, 9], logits: &LOGITS, instructions: 1 << 40 }),
            Message::Error { code: ErrorCode::BadCrc, seq: 0, detail: "crc" },
            Message::GetStats,
            Message::Stats(Stats { frames_ok: 1, frames_bad: 2, images: 3, instructions: 4 }),
            Message::SelfTest,
            Message::SelfTestReport { passed: 5, failed: 0, detail: "ok" },
            Message::Shutdown,
            Message::Bye(Stats::default()),
        ]
    }

    #[test]
    fn every_message_roundtrips_through_a_stream_in_small_reads() {
        let msgs = sample_messages();
        assert_eq!(msgs.len() as u32, MESSAGE_TAGS);
        let mut wire = vec![0u8, 0]; // leading empty frames are skipped
        for m in &msgs {
            wire.extend(frame(m));
        }
        for chunk in [1, 3, 17, 4096] {
            // A buffer just big enough for the largest frame forces compaction.
            let mut buf = [0u8; 64];
            let mut rd = FrameReader::new(&mut buf);
            let mut p = Pipe::new(wire.clone(), chunk);
            for m in &msgs {
                assert_eq!(&rd.recv(&mut p).unwrap(), m);
            }
            assert_eq!(rd.recv(&mut p), Err(RecvError::Eof));
        }
        // decode_frame on one whole frame.
        let mut f = frame(&msgs[3]);
        assert_eq!(Message::decode_frame(&mut f).unwrap(), msgs[3]);
        let mut out = [0u8; 64];
        let n = encode_to_slice(&msgs[2], &mut out).unwrap();
        assert_eq!(&out[..n], &frame(&msgs[2])[..]);
        assert!(matches!(encode_to_slice(&msgs[1], &mut out[..10]), Err(SendError::Io(_))));
    }

    /// Every malformed frame, each followed by a good one.
    fn malformed_cases() -> Vec<(&'static str, Vec<u8>, FrameError)> {
        let good = frame(&Message::Ping { nonce: 9 });
        let mut bad_crc = good.clone();
        bad_crc[2] ^= 0x10;
        let bad_crc_err = {
            let mut b = bad_crc[..bad_crc.len() - 1].to_vec();
            let n = cobs_decode_in_place(&mut b).unwrap();
            check_crc(&b[..n]).unwrap_err()
        };
        let big = frame(&Message::Classify { seq: 1, want_logits: false, images: &[5u8; 300] });
        // Cut a frame inside its last COBS block: the block runs past the end.
        let mid = frame(&Message::Classify { seq: 1, want_logits: false, images: &[5u8; 100] });
        let mut truncated = mid[..mid.len() - 3].to_vec();
        truncated.push(0);
        let mut unknown = vec![42u8];
        unknown.extend_from_slice(&[1, 2, 3]);
        let mut bad_body = frame(&Message::GetStats);
        bad_body.clear();
        bad_body.extend(raw_frame(&[2, 1, 5, 1])); // Classify: bool 5 is invalid
        let trailing = raw_frame(&[5, 0]); // GetStats + a stray byte
        let short_cut = big[..40].iter().copied().chain([0]).collect::<Vec<_>>(); // a 255 block cut → Cobs
        vec![
            ("bad crc", bad_crc, bad_crc_err),
            ("truncated", truncated, FrameError::Cobs),
            ("truncated early", short_cut, FrameError::Cobs),
            ("too short", vec![3, 1, 2, 0], FrameError::TooShort { len: 2 }),
            ("unknown tag", raw_frame(&unknown), FrameError::UnknownTag { tag: 42 }),
            ("bad body", bad_body, FrameError::Decode),
            ("trailing bytes", trailing, FrameError::Decode),
            ("oversized", big, FrameError::Oversized { capacity: 128 }),
            (
                "garbage without delimiter then one",
                vec![0xAA; 1000].into_iter().chain([0]).collect(),
                FrameError::Oversized { capacity: 128 },
            ),
        ]
    }

    #[test]
    fn each_malformed_frame_is_reported_and_the_next_one_still_decodes() {
        let good = frame(&Message::Ping { nonce: 9 });
        for (name, bad, err) in malformed_cases() {
            for chunk in [1, 7, 4096] {
                let mut wire = bad.clone();
                wire.extend_from_slice(&good);
                let mut buf = [0u8; 128];
                let mut rd = FrameReader::new(&mut buf);
                let mut p = Pipe::new(wire, chunk);
                assert_eq!(rd.recv(&mut p), Err(RecvError::Frame(err)), "{name}, chunk {chunk}");
                assert_eq!(rd.recv(&mut p), Ok(Message::Ping { nonce: 9 }), "{name}, chunk {chunk}");
                assert_eq!(rd.recv(&mut p), Err(RecvError::Eof));
            }
        }
    }

    #[test]
    fn random_corruption_never_panics_and_resyncs() {
        let good = frame(&Message::Ping { nonce: 77 });
        let base = frame(&Message::Classify { seq: 5, want_logits: true, images: &[3, 0, 9, 0, 0, 200, 1, 1] });
        let mut rng = crate::rng::Rng::new(3);
        for _ in 0..2000 {
            let mut f = base.clone();
            let i = rng.next_u32() as usize % (f.len() - 1);
            f[i] = (rng.next_u32() as u8).max(1);
            let mut wire = f;
            wire.extend_from_slice(&good);
            let mut buf = [0u8; 64];
            let mut rd = FrameReader::new(&mut buf);
            let mut p = Pipe::new(wire, 5);
            // The corrupted frame decodes to something or an error...
            let _ = rd.recv(&mut p);
            // ...and the next frame always decodes.
            assert_eq!(rd.recv(&mut p), Ok(Message::Ping { nonce: 77 }));
        }
    }

    /// A toy model: 4 inputs, class = argmax, logits = inputs.
    struct Toy {
        ticks: u64,
    }
    impl Backend for Toy {
        fn fw_version(&self) -> &str {
            "toy"
        }
        fn dims(&self) -> &[u32] {
            &[4, 4]
        }
        fn model_crc(&self) -> u32 {
            0xabcd
        }
        fn classify(&mut self, pixels: &[u8], logits: &mut [i32]) -> usize {
            self.ticks += 100;
            for (l, &p) in logits.iter_mut().zip(pixels) {
                *l = p as i32 - 100;
            }
            (0..4).max_by_key(|&j| (logits[j], core::cmp::Reverse(j))).unwrap()
        }
        fn instructions(&mut self) -> Option<u64> {
            Some(self.ticks)
        }
    }

    fn run_device(wire: Vec<u8>, rx_len: usize) -> (ServeEnd<core::convert::Infallible>, Vec<Message<'static>>) {
        let mut p = Pipe::new(wire, 13);
        let mut rx = vec![0u8; rx_len];
        let (mut classes, mut logits) = ([0u8; 8], [0u8; 8 * 16]);
        let end =
            serve(&mut p, &mut Toy { ticks: 0 }, Buffers { rx: &mut rx, classes: &mut classes, logits: &mut logits });
        // Decode the replies (leaked: fine in a test).
        let out: &'static mut [u8] = std::boxed::Box::leak(p.output.into_boxed_slice());
        let mut replies = Vec::new();
        for f in out.split_mut(|&b| b == 0).filter(|f| !f.is_empty()) {
            replies.push(Message::decode_frame(f).unwrap());
        }
        (end, replies)
    }

    #[test]
    fn serve_answers_requests_and_survives_every_malformed_frame() {
        let imgs = [9u8, 1, 2, 3, 0, 0, 7, 0];
        let classify = frame(&Message::Classify { seq: 11, want_logits: true, images: &imgs });
        let mut wire = frame(&Message::Ping { nonce: 5 });
        wire.extend(&classify);
        let cases = malformed_cases();
        for (_, bad, _) in &cases {
            wire.extend(bad);
            wire.extend(&classify);
        }
        wire.extend(frame(&Message::Classify { seq: 12, want_logits: false, images: &imgs[..3] }));
        wire.extend(frame(&Message::Classify { seq: 13, want_logits: false, images: &[1; 4 * 9] }));
        wire.extend(frame(&Message::Stats(Stats::default())));
        wire.extend(frame(&Message::SelfTest));
        wire.extend(frame(&Message::GetStats));
        wire.extend(frame(&Message::Shutdown));
        wire.extend(frame(&Message::Ping { nonce: 6 })); // after shutdown: never read
        let (end, replies) = run_device(wire, 128);
        let mut it = replies.iter();
        let Some(Message::Hello(h)) = it.next() else { panic!() };
        assert_eq!(
            (h.nonce, h.dims(), h.model_crc, h.fw_version, h.counts_instructions),
            (0, &[4u32, 4][..], 0xabcd, "toy", true)
        );
        // 128-byte buffer, 4-byte images: limited by the 8 classes.
        assert_eq!((h.max_batch, h.frame_capacity), (8, 128));
        assert!(matches!(it.next(), Some(Message::Hello(Hello { nonce: 5, .. }))));
        let expect = Message::Predictions(Predictions {
            seq: 11,
            classes: &[0, 2],
            logits: &[
                165, 255, 255, 255, 157, 255, 255, 255, 158, 255, 255, 255, 159, 255, 255, 255, 156, 255, 255, 255,
                156, 255, 255, 255, 163, 255, 255, 255, 156, 255, 255, 255,
            ],
            instructions: 200,
        });
        assert_eq!(it.next(), Some(&expect));
        for (name, _, err) in &cases {
            match it.next() {
                Some(Message::Error { code, seq: 0, detail }) => {
                    assert_eq!(*code, ErrorCode::from(*err), "{name}: {detail}");
                }
                other => panic!("{name}: {other:?}"),
            }
            let Some(Message::Predictions(p)) = it.next() else { panic!("{name}") };
            assert_eq!(p.classes, &[0, 2]);
        }
        assert!(matches!(it.next(), Some(Message::Error { code: ErrorCode::BadImageSize, seq: 12, .. })));
        assert!(matches!(it.next(), Some(Message::Error { code: ErrorCode::BatchTooLarge, seq: 13, .. })));
        assert!(matches!(it.next(), Some(Message::Error { code: ErrorCode::Unexpected, .. })));
        assert!(matches!(it.next(), Some(Message::SelfTestReport { passed: 0, failed: 0, .. })));
        let n_bad = cases.len() as u32;
        let stats = Stats {
            frames_ok: 8 + n_bad,
            frames_bad: n_bad,
            images: 2 * (1 + n_bad as u64),
            instructions: 200 * (1 + n_bad as u64),
        };
        assert_eq!(it.next(), Some(&Message::Stats(Stats { frames_ok: stats.frames_ok - 1, ..stats })));
        assert_eq!(it.next(), Some(&Message::Bye(stats)));
        assert_eq!(it.next(), None);
        assert_eq!(end, ServeEnd::Shutdown(stats));
    }

    #[test]
    fn serve_ends_on_eof() {
        let (end, replies) = run_device(frame(&Message::Ping { nonce: 1 }), 64);
        assert_eq!(replies.len(), 2);
        assert!(matches!(end, ServeEnd::Eof(Stats { frames_ok: 1, .. })));
    }
}
