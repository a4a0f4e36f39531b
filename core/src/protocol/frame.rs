//! Frames: `COBS(body ‖ crc32_le(body)) 0x00` (see [`super`]), written
//! straight to a stream and decoded in place.

use embedded_io::{Read, Write};

use super::{Message, CRC, CRC_LEN, DELIMITER, MESSAGE_TAGS};

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
pub(super) fn cobs_decode_in_place(buf: &mut [u8]) -> Result<usize, FrameError> {
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
