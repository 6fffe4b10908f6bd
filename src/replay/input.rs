//! Reading trace files: compression and encoding are recognized from the content, records
//! are decoded one at a time, and a record that cannot be decoded is reported with its place
//! in the file, the rest still read.
//!
//! What the Collector's file exporter writes (`exporter/fileexporter`):
//! - `format: json`: one `TracesData` JSON object per line;
//! - `format: proto`: each `TracesData` message preceded by its length, 4 bytes big-endian;
//! - `compression: zstd`: either the whole file is one zstd stream of the above (the
//!   exporter's native compression), or, in its older form, each record is compressed on its
//!   own and written with the 4-byte length before it.
//!
//! gzip (`.gz`, from `gzip` or a log shipper) is read as a stream too.
//!
//! Memory does not grow with the data: compressed input is decoded as a stream, and every
//! record (a line, a message once decompressed) is bounded by the record limit
//! ([`MAX_RECORD_BYTES`] by default): a longer one is skipped without being held (a line is
//! read on to its end, a message skipped by its length) and said, the rest of the file
//! still read. A zstd window beyond the limit (16 MiB by default) is refused: zstd would
//! allocate it.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use super::model::SpanRec;
use super::origin::Origin;
use super::otlp;

/// How the records of a file are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum InputFormat {
    /// From the file's extension (`.json`, `.jsonl`, `.ndjson`; `.pb`, `.binpb`, `.proto`;
    /// before any `.gz` or `.zst`), else from the content: data (once decompressed) that
    /// starts with `{`, white space or any byte a length prefix of at most
    /// 256 MiB cannot start with is JSON lines, anything else length-prefixed protobuf.
    #[default]
    Auto,
    /// OTLP JSON, one `{"resourceSpans":[...]}` object per line.
    Json,
    /// OTLP protobuf `TracesData` (or `ExportTraceServiceRequest`) messages, each preceded by
    /// its length as a 4-byte big-endian integer.
    Proto,
}

impl std::str::FromStr for InputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "proto" | "protobuf" => Ok(Self::Proto),
            other => Err(format!(
                "unknown input format {other:?}: use auto, json or proto"
            )),
        }
    }
}

/// The largest record read by default: a JSON line, or a protobuf message once
/// decompressed. A larger one is skipped and said, the rest of the file still read; this
/// bound (with the replay's window) keeps the report under 100 MiB whatever the input.
/// The Collector's exports are far smaller (its gRPC receiver takes 4 MiB by default);
/// `Replay::with_max_record_bytes` (`--max-record-mib`) raises it.
pub(crate) const MAX_RECORD_BYTES: usize = 16 << 20;

/// The most spans kept of one record: one per 256 bytes of the record limit (65,536 for
/// 16 MiB). A collector's spans of the convention are larger (a span with no attribute is
/// 100 bytes of JSON, 40 of protobuf; one with the layer's figures, 1 kB); a record of
/// more, smaller spans is forged, and would cost several times its size once read.
fn max_spans(max_record: usize) -> usize {
    (max_record / 256).max(1024)
}

/// A record buffer larger than this is freed after its record (the next large one takes it
/// again).
const KEPT_BUFFER: usize = 1 << 20;

/// A length prefix above this (or the record limit, if larger) is taken for corruption:
/// the file cannot be read further.
const CORRUPT_PREFIX: usize = 256 << 20;

/// The largest zstd window accepted: at least 16 MiB (what `zstd -19` and the Collector
/// use need at most), more with a larger record limit.
fn zstd_window_log(max_record: usize) -> u32 {
    (usize::BITS - max_record.saturating_sub(1).leading_zeros()).clamp(24, 31)
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Where in a file a record sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// A line of a JSON file (from 1).
    Line(u64),
    /// A length-prefixed record (from 1) starting at this byte of the (decompressed) data.
    Record { index: u64, offset: u64 },
    /// The file as a whole (it cannot be opened or decompressed).
    File,
}

/// Something in a trace file that could not be read; the rest of the file still is (unless
/// [`ReadError::stopped`] says the file could not be read further). [`ReadError::lost`]
/// says what it cost: a whole record, spans of a record, or values of spans that were kept.
///
/// Its message names the file and the line (JSON) or record (protobuf), for logging:
/// `records.json:17: not OTLP JSON: expected value at line 1 column 1`.
#[derive(Debug, thiserror::Error)]
#[error("{file}{place}: {message}{}", if *.stopped { " (the rest of the file cannot be read)" } else { "" })]
pub(crate) struct ReadError {
    file: String,
    place: PlaceDisplay,
    message: String,
    stopped: bool,
    lost: Lost,
}

/// What a [`ReadError`] cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Lost {
    /// A record (a line, a message), or the rest of the file.
    Record,
    /// Spans of a record whose other spans were read (a span without valid ids).
    Spans,
    /// Values of spans that were kept (a number beyond what its field holds, unreadable
    /// timestamps): each is left out, as the layer leaves out an invalid field, and the
    /// span counts in its request's `invalid_spans`.
    Values,
}

#[derive(Debug)]
struct PlaceDisplay(Place);

impl fmt::Display for PlaceDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Place::Line(n) => write!(f, ":{n}"),
            Place::Record { index, offset } => write!(f, ": record {index} (byte {offset})"),
            Place::File => Ok(()),
        }
    }
}

impl ReadError {
    fn new(
        file: &str,
        place: Place,
        message: impl fmt::Display,
        stopped: bool,
        lost: Lost,
    ) -> Self {
        Self {
            file: file.to_owned(),
            place: PlaceDisplay(place),
            message: message.to_string(),
            stopped,
            lost,
        }
    }

    /// The file `file` cannot be opened.
    pub(crate) fn unopenable(file: &str, error: &io::Error) -> Self {
        Self::new(
            file,
            Place::File,
            format!("cannot open: {error}"),
            true,
            Lost::Record,
        )
    }

    /// What it cost.
    pub(crate) fn lost(&self) -> Lost {
        self.lost
    }

    /// The line of a JSON file (from 1), if the error is about one.
    pub(crate) fn line(&self) -> Option<u64> {
        match self.place.0 {
            Place::Line(n) => Some(n),
            _ => None,
        }
    }
}

/// What reading one file gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct FileSummary {
    /// Records (lines, messages) decoded.
    pub records: u64,
    /// Spans in them.
    pub spans: u64,
    /// Records that could not be read (each reported as a [`ReadError`]), and the file if
    /// it could not be opened or read further.
    pub errors: u64,
    /// Spans left out of records that were read (no valid ids).
    pub spans_dropped: u64,
    /// Values left out of spans that were kept.
    pub values_ignored: u64,
    /// Bytes of data read (decompressed).
    pub bytes: u64,
}

#[cfg(test)]
/// Reads every record of `reader`, handing the spans of each to `spans` and each bad record
/// to `on_error`. Never fails as a whole: a file that cannot be read at all is one error.
pub(crate) fn read_records(
    file: &str,
    reader: impl Read,
    format: InputFormat,
    max_record: usize,
    spans: &mut dyn FnMut(Vec<(SpanRec, Origin)>),
    on_error: &mut dyn FnMut(ReadError),
) -> FileSummary {
    let mut records = Records::new(file, Box::new(reader), format, max_record);
    while let Some(batch) = records.next(on_error) {
        spans(batch);
    }
    records.summary
}

/// How a record is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    Proto,
}

enum Mode<'a> {
    /// Compression and encoding not recognized yet.
    Start(Box<dyn Read + 'a>),
    /// JSON lines; `n` is the number of the last line read.
    Lines {
        r: Box<dyn BufRead + 'a>,
        n: u64,
    },
    /// Records after their 4-byte big-endian length; each a zstd frame if `compressed` (the
    /// file exporter's older compression).
    Framed {
        r: Box<dyn BufRead + 'a>,
        compressed: bool,
        index: u64,
        offset: u64,
    },
    Done,
}

/// What one step of [`Records::next_raw`] came to.
enum Next {
    /// A record is in [`Records::raw`].
    Record(Place, Encoding),
    /// None yet (the file's format read, a record skipped): read on.
    Again,
    /// The end of the file, or reading stopped.
    End,
}

/// The records of one file, read one at a time (a pull reader: the replay reads several
/// files in step).
pub(crate) struct Records<'a> {
    file: String,
    format: InputFormat,
    mode: Mode<'a>,
    /// The last raw record (a line, or a decompressed message).
    buf: Vec<u8>,
    /// A compressed record, before it is decompressed into `buf`.
    frame: Vec<u8>,
    /// The largest record read.
    max_record: usize,
    /// What was read so far.
    pub(crate) summary: FileSummary,
}

impl fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("file", &self.file)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<'a> Records<'a> {
    pub(crate) fn new(
        file: &str,
        reader: Box<dyn Read + 'a>,
        format: InputFormat,
        max_record: usize,
    ) -> Self {
        Self {
            file: file.to_owned(),
            format,
            mode: Mode::Start(reader),
            buf: Vec::new(),
            frame: Vec::new(),
            max_record,
            summary: FileSummary::default(),
        }
    }

    /// A record (or the rest of the file, if `stopped`) that cannot be read.
    fn error(
        &mut self,
        on_error: &mut dyn FnMut(ReadError),
        place: Place,
        message: impl fmt::Display,
        stopped: bool,
    ) {
        self.summary.errors += 1;
        on_error(ReadError::new(
            &self.file,
            place,
            message,
            stopped,
            Lost::Record,
        ));
        if stopped {
            self.mode = Mode::Done;
        }
    }

    /// An error of reading, said with what to do when zstd refused a window.
    fn cannot_read(&self, e: &io::Error) -> String {
        format!("cannot read: {}", self.said(e))
    }

    fn said(&self, e: &io::Error) -> String {
        if e.to_string().contains("too much memory") {
            let mib = 1_u64 << (zstd_window_log(self.max_record) - 20);
            format!(
                "{e} (a zstd window over {mib} MiB, from `zstd --long` or `--ultra`: \
                 recompress without, or raise --max-record-mib)"
            )
        } else {
            e.to_string()
        }
    }

    /// A record over the limit, said.
    fn over_limit(&self, what: &str) -> String {
        let mib = self.max_record as f64 / f64::from(1 << 20);
        format!(
            "{what} the limit of {mib} MiB: skipped (raise the limit with --max-record-mib, \
             `Replay::with_max_record_bytes`, if the collector exports larger batches)"
        )
    }

    /// Recognizes compression and encoding from the head of the data.
    fn start(&mut self, reader: Box<dyn Read + 'a>, on_error: &mut dyn FnMut(ReadError)) {
        let mut r = BufReader::with_capacity(1 << 18, reader);
        let head = match r.fill_buf() {
            Ok(head) => head,
            Err(e) => return self.error(on_error, Place::File, self.cannot_read(&e), true),
        };
        let stream: Box<dyn BufRead + 'a> = if head.starts_with(&GZIP_MAGIC) {
            Box::new(BufReader::with_capacity(
                1 << 18,
                flate2::read::MultiGzDecoder::new(r),
            ))
        } else if head.starts_with(&ZSTD_MAGIC) {
            let decoder = zstd::stream::read::Decoder::with_buffer(r).and_then(|mut d| {
                d.window_log_max(zstd_window_log(self.max_record))?;
                Ok(d)
            });
            match decoder {
                Ok(decoder) => Box::new(BufReader::with_capacity(1 << 18, decoder)),
                Err(e) => {
                    return self.error(
                        on_error,
                        Place::File,
                        format!("cannot start zstd: {e}"),
                        true,
                    );
                }
            }
        } else if head.len() >= 8 && head[4..8] == ZSTD_MAGIC {
            self.mode = Mode::Framed {
                r: Box::new(r),
                compressed: true,
                index: 0,
                offset: 0,
            };
            return;
        } else {
            Box::new(r)
        };
        self.stream(stream, on_error);
    }

    /// Uncompressed (or stream-decompressed) data: JSON lines or length-prefixed protobuf.
    fn stream(&mut self, mut r: Box<dyn BufRead + 'a>, on_error: &mut dyn FnMut(ReadError)) {
        let json = match (self.format, json_by_name(&self.file)) {
            (InputFormat::Json, _) => true,
            (InputFormat::Proto, _) => false,
            (InputFormat::Auto, Some(json)) => json,
            (InputFormat::Auto, None) => match r.fill_buf() {
                Ok([]) => {
                    self.mode = Mode::Done;
                    return;
                }
                // A plausible length prefix (at most 256 MiB) starts with 0x00..=0x10.
                Ok([first, ..]) => *first > 0x10 || first.is_ascii_whitespace(),
                Err(e) => {
                    return self.error(on_error, Place::File, self.cannot_read(&e), true);
                }
            },
        };
        self.mode = if json {
            Mode::Lines { r, n: 0 }
        } else {
            Mode::Framed {
                r: Box::new(r),
                compressed: false,
                index: 0,
                offset: 0,
            }
        };
    }

    /// The next raw record, in [`Records::raw`], with its place and encoding; errors of
    /// reading go to `on_error`. `None` at the end of the file.
    pub(crate) fn next_raw(
        &mut self,
        on_error: &mut dyn FnMut(ReadError),
    ) -> Option<(Place, Encoding)> {
        loop {
            let next = match std::mem::replace(&mut self.mode, Mode::Done) {
                Mode::Done => Next::End,
                Mode::Start(reader) => {
                    self.start(reader, on_error);
                    Next::Again
                }
                Mode::Lines { r, n } => self.next_line(r, n + 1, on_error),
                Mode::Framed {
                    r,
                    compressed,
                    index,
                    offset,
                } => self.next_frame(r, compressed, (index, offset), on_error),
            };
            match next {
                Next::Record(place, encoding) => return Some((place, encoding)),
                Next::Again => {}
                Next::End => return None,
            }
        }
    }

    /// Line `n` (from 1) of JSON lines: a record unless it is blank or over the limit.
    fn next_line(
        &mut self,
        mut r: Box<dyn BufRead + 'a>,
        n: u64,
        on_error: &mut dyn FnMut(ReadError),
    ) -> Next {
        let place = Place::Line(n);
        let line = read_line(&mut *r, &mut self.buf, self.max_record);
        self.mode = Mode::Lines { r, n };
        match line {
            Ok(Line::End) => {
                self.mode = Mode::Done;
                Next::End
            }
            Ok(Line::Read(len)) => {
                self.summary.bytes += len;
                if self.buf.trim_ascii().is_empty() {
                    Next::Again
                } else {
                    Next::Record(place, Encoding::Json)
                }
            }
            Ok(Line::TooLong(len)) => {
                self.summary.bytes += len;
                let message = self.over_limit(&format!("a line of {len} bytes, over"));
                self.error(on_error, place, message, false);
                Next::Again
            }
            Err(e) => {
                self.error(on_error, place, self.cannot_read(&e), true);
                Next::End
            }
        }
    }

    /// The record after the `index`-th, at byte `offset`, of length-prefixed records:
    /// empty ones counted in bulk, one over the limit skipped by its length, a zstd frame
    /// decompressed.
    fn next_frame(
        &mut self,
        mut r: Box<dyn BufRead + 'a>,
        compressed: bool,
        (mut index, mut offset): (u64, u64),
        on_error: &mut dyn FnMut(ReadError),
    ) -> Next {
        // Empty records (a length of 0, as in a stream of zeros) in bulk.
        let empty = empty_records(&mut *r);
        if empty > 0 {
            index += empty;
            offset += 4 * empty;
            self.summary.records += empty;
            self.summary.bytes += 4 * empty;
            self.mode = Mode::Framed {
                r,
                compressed,
                index,
                offset,
            };
            return Next::Again;
        }
        let index = index + 1;
        let place = Place::Record { index, offset };
        let Some(len) = self.frame_len(&mut r, place, on_error) else {
            return Next::End;
        };
        let next = offset + 4 + len as u64;
        self.summary.bytes += 4 + len as u64;
        if len > self.max_record {
            if !self.skip_frame(&mut r, place, len, on_error) {
                return Next::End;
            }
            self.mode = Mode::Framed {
                r,
                compressed,
                index,
                offset: next,
            };
            return Next::Again;
        }
        let target = if compressed {
            &mut self.frame
        } else {
            &mut self.buf
        };
        target.clear();
        match (&mut r).take(len as u64).read_to_end(target) {
            Ok(got) if got == len => {}
            Ok(got) => {
                let message = format!("truncated record: {got} of {len} bytes");
                self.error(on_error, place, message, true);
                return Next::End;
            }
            Err(e) => {
                self.error(on_error, place, self.cannot_read(&e), true);
                return Next::End;
            }
        }
        self.mode = Mode::Framed {
            r,
            compressed,
            index,
            offset: next,
        };
        if compressed {
            self.decompressed(place, on_error)
        } else {
            Next::Record(place, Encoding::Proto)
        }
    }

    /// A record's length prefix; `None` at the end of the file, or (said, reading stopped)
    /// for a truncated or implausible one.
    fn frame_len(
        &mut self,
        r: &mut Box<dyn BufRead + 'a>,
        place: Place,
        on_error: &mut dyn FnMut(ReadError),
    ) -> Option<usize> {
        let mut len = [0_u8; 4];
        match read_full(r, &mut len) {
            Ok(0) => return None,
            Ok(4) => {}
            Ok(_) => {
                self.error(on_error, place, "truncated length prefix", true);
                return None;
            }
            Err(e) => {
                self.error(on_error, place, self.cannot_read(&e), true);
                return None;
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_record.max(CORRUPT_PREFIX) {
            let message =
                format!("a record of {len} bytes is not plausible (corrupt length prefix?)");
            self.error(on_error, place, message, true);
            return None;
        }
        Some(len)
    }

    /// Skips a record over the limit by its length, without holding it (said); `false` if
    /// the file ends first (said, reading stopped).
    fn skip_frame(
        &mut self,
        r: &mut Box<dyn BufRead + 'a>,
        place: Place,
        len: usize,
        on_error: &mut dyn FnMut(ReadError),
    ) -> bool {
        match io::copy(&mut r.take(len as u64), &mut io::sink()) {
            Ok(got) if got == len as u64 => {
                let message = self.over_limit(&format!("a record of {len} bytes, over"));
                self.error(on_error, place, message, false);
                true
            }
            Ok(got) => {
                let message = format!("truncated record: {got} of {len} bytes");
                self.error(on_error, place, message, true);
                false
            }
            Err(e) => {
                self.error(on_error, place, self.cannot_read(&e), true);
                false
            }
        }
    }

    /// The zstd frame just read, decompressed into `buf`: a record (JSON or protobuf), or
    /// (said) one over the limit or not a frame.
    fn decompressed(&mut self, place: Place, on_error: &mut dyn FnMut(ReadError)) -> Next {
        match unzstd(&self.frame, &mut self.buf, self.max_record) {
            Ok(true) => {
                let json = match self.format {
                    InputFormat::Json => true,
                    InputFormat::Proto => false,
                    InputFormat::Auto => self.buf.first() == Some(&b'{'),
                };
                let encoding = if json {
                    Encoding::Json
                } else {
                    Encoding::Proto
                };
                Next::Record(place, encoding)
            }
            Ok(false) => {
                let message = self.over_limit("decompresses to more than");
                self.error(on_error, place, message, false);
                Next::Again
            }
            Err(e) => {
                let message = format!("not a zstd frame: {}", self.said(&e));
                self.error(on_error, place, message, false);
                Next::Again
            }
        }
    }

    /// The last raw record [`Records::next_raw`] gave.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.buf
    }

    /// Decodes the last raw record; a record that cannot be decoded goes to `on_error`.
    pub(crate) fn decode(
        &mut self,
        place: Place,
        encoding: Encoding,
        on_error: &mut dyn FnMut(ReadError),
    ) -> Option<Vec<(SpanRec, Origin)>> {
        let mut decoded = otlp::Decoded::new(max_spans(self.max_record));
        let result = match encoding {
            Encoding::Json => otlp::decode_json(self.buf.trim_ascii(), &mut decoded),
            Encoding::Proto => otlp::decode_proto(&self.buf, &mut decoded),
        };
        // A large record's buffers go before its spans are replayed.
        for buf in [&mut self.buf, &mut self.frame] {
            if buf.capacity() > KEPT_BUFFER {
                *buf = Vec::new();
            }
        }
        if let Err(e) = result {
            self.error(on_error, place, e, false);
            return None;
        }
        self.summary.records += 1;
        self.summary.spans += decoded.spans.len() as u64;
        if let Some(why) = decoded.first_dropped.take() {
            self.summary.spans_dropped += decoded.dropped;
            let more = match decoded.dropped {
                1 => String::new(),
                n => format!(" ({} more spans of this record left out)", n - 1),
            };
            on_error(ReadError::new(
                &self.file,
                place,
                format!("a span left out: {why}{more}; the record's other spans are read"),
                false,
                Lost::Spans,
            ));
        }
        let mut bad = decoded
            .spans
            .iter()
            .filter_map(|s| Some((s.span_id, s.problem.as_deref()?)));
        if let Some((span, first)) = bad.next() {
            let others = bad.fold(0, |n, (_, p)| n + u64::from(p.values));
            let values = u64::from(first.values) + others;
            self.summary.values_ignored += values;
            let unsaid = values - first.said.len() as u64;
            let more = match (unsaid, others) {
                (0, _) => String::new(),
                (n, 0) => format!(" ({n} more values of this span)"),
                (n, _) => format!(" ({n} more values of this record)"),
            };
            on_error(ReadError::new(
                &self.file,
                place,
                format!(
                    "span {span:016x}: {}: ignored, the span kept (counted in \
                     `invalid_spans`{}){more}",
                    first.said.join("; "),
                    if first.bad_time {
                        "; its time is its children's"
                    } else {
                        ""
                    }
                ),
                false,
                Lost::Values,
            ));
        }
        Some(decoded.into_spans())
    }

    /// The spans of the next record that holds any (records that cannot be read go to
    /// `on_error`); `None` at the end of the file.
    pub(crate) fn next(
        &mut self,
        on_error: &mut dyn FnMut(ReadError),
    ) -> Option<Vec<(SpanRec, Origin)>> {
        loop {
            let (place, encoding) = self.next_raw(on_error)?;
            if let Some(spans) = self.decode(place, encoding, on_error) {
                if !spans.is_empty() {
                    return Some(spans);
                }
            }
        }
    }
}

/// Whether a file's name says JSON (`Some(true)`) or protobuf (`Some(false)`).
fn json_by_name(file: &str) -> Option<bool> {
    let name = file.to_ascii_lowercase();
    let name = [".gz", ".zst", ".zstd"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    let ext = name.rsplit_once('.')?.1;
    match ext {
        "json" | "jsonl" | "ndjson" => Some(true),
        "pb" | "binpb" | "proto" | "protobuf" => Some(false),
        _ => None,
    }
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line of this many bytes (its newline included), in the buffer.
    Read(u64),
    /// A line of this many bytes, longer than the limit: read to its end, not kept.
    TooLong(u64),
    /// The end of the data.
    End,
}

/// Reads the next line into `buf` (cleared first), holding at most `max` bytes of it
/// (its newline aside): a longer line is read to its end and dropped as it goes.
fn read_line(r: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let (mut len, mut any, mut ended) = (0_u64, false, false);
    while !ended {
        let chunk = match r.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let take = match memchr::memchr(b'\n', chunk) {
            Some(i) => {
                ended = true;
                i + 1
            }
            None => chunk.len(),
        };
        len += take as u64;
        if len - u64::from(ended) <= max as u64 {
            buf.extend_from_slice(&chunk[..take]);
        } else if !buf.is_empty() {
            buf.clear();
        }
        r.consume(take);
    }
    Ok(if !any {
        Line::End
    } else if len - u64::from(ended) > max as u64 {
        Line::TooLong(len)
    } else {
        Line::Read(len)
    })
}

/// How many empty records (4 zero bytes each) start the buffered data; consumed.
fn empty_records(r: &mut dyn BufRead) -> u64 {
    let Ok(chunk) = r.fill_buf() else {
        return 0; // said by the next read
    };
    let words = chunk.chunks_exact(4).take_while(|w| *w == [0; 4]).count();
    r.consume(4 * words);
    words as u64
}

/// Decompresses the zstd frame(s) of `frame` into `out`, streaming: `false` (and `out`
/// holding the first `max + 1` bytes) if they decompress to more than `max` bytes.
fn unzstd(frame: &[u8], out: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    out.clear();
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame)?;
    decoder.window_log_max(zstd_window_log(max))?;
    let got = decoder.take(max as u64 + 1).read_to_end(out)?;
    Ok(got <= max)
}

/// Reads until `buf` is full or the end; how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const SPAN: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"omni.request","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"request_id","value":{"stringValue":"r-1"}}]}]}]}]}"#;

    fn read(bytes: &[u8], format: InputFormat) -> (FileSummary, Vec<String>) {
        let mut errors = Vec::new();
        let summary = read_records(
            "t",
            bytes,
            format,
            MAX_RECORD_BYTES,
            &mut |_| {},
            &mut |e| errors.push(e.to_string()),
        );
        (summary, errors)
    }

    fn proto_records(n: usize) -> Vec<u8> {
        use prost::Message as _;
        let data: opentelemetry_proto::tonic::trace::v1::TracesData =
            serde_json::from_str(SPAN).expect("json");
        let msg = data.encode_to_vec();
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            out.extend_from_slice(&msg);
        }
        out
    }

    #[test]
    fn json_lines_with_a_bad_line() {
        let text = format!("{SPAN}\n\nnot json\r\n{SPAN}\n");
        let (summary, errors) = read(text.as_bytes(), InputFormat::Auto);
        assert_eq!((summary.records, summary.spans, summary.errors), (2, 2, 1));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("t:3: not OTLP JSON: "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn protobuf_records_and_a_truncated_end() {
        let mut bytes = proto_records(3);
        let (summary, errors) = read(&bytes, InputFormat::Auto);
        assert_eq!(
            (summary.records, summary.spans, summary.errors),
            (3, 3, 0),
            "{errors:?}"
        );
        bytes.truncate(bytes.len() - 3);
        let (summary, errors) = read(&bytes, InputFormat::Proto);
        assert_eq!((summary.records, summary.errors), (2, 1));
        assert!(errors[0].contains("record 3 (byte"), "{errors:?}");
        assert!(
            errors[0].ends_with("(the rest of the file cannot be read)"),
            "{errors:?}"
        );
    }

    #[test]
    fn gzip_and_zstd_streams_and_zstd_frames() {
        let text = format!("{SPAN}\n{SPAN}\n");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert_eq!(read(&gz, InputFormat::Auto).0.spans, 2);
        let zst = zstd::stream::encode_all(&proto_records(2)[..], 1).expect("zstd");
        assert_eq!(read(&zst, InputFormat::Auto).0.spans, 2);
        // The older form: each record compressed apart, with its length before it.
        let mut framed = Vec::new();
        for record in [SPAN.as_bytes(), b"{oops"] {
            let frame = zstd::stream::encode_all(record, 1).expect("zstd");
            framed.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            framed.extend_from_slice(&frame);
        }
        let (summary, errors) = read(&framed, InputFormat::Auto);
        assert_eq!((summary.spans, summary.errors), (1, 1));
        assert!(errors[0].starts_with("t: record 2 (byte"), "{errors:?}");
    }

    #[test]
    fn broken_gzip_is_one_error_after_what_was_read() {
        let text = format!("{SPAN}\n").repeat(200);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).expect("gzip");
        let mut gz = gz.finish().expect("gzip");
        gz.truncate(gz.len() / 2);
        let (summary, errors) = read(&gz, InputFormat::Auto);
        assert!(summary.spans > 0);
        assert_eq!(summary.errors, 1, "{errors:?}");
        assert!(errors[0].contains("cannot read"), "{errors:?}");
    }

    /// Reads with a record limit of `max` bytes.
    fn read_max(bytes: &[u8], max: usize) -> (FileSummary, Vec<String>) {
        let mut errors = Vec::new();
        let summary = read_records("t", bytes, InputFormat::Auto, max, &mut |_| {}, &mut |e| {
            errors.push(e.to_string())
        });
        (summary, errors)
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_and_the_rest_read() {
        let max = SPAN.len() + 10;
        let long = "x".repeat(max + 1);
        let text = format!("{SPAN}\n{long}\n{SPAN}\n{long}");
        let (summary, errors) = read_max(text.as_bytes(), max);
        assert_eq!((summary.records, summary.spans, summary.errors), (2, 2, 2));
        assert!(
            errors[0].starts_with(&format!("t:2: a line of {} bytes, over the limit", max + 2)),
            "{errors:?}"
        );
        assert!(errors[1].starts_with("t:4: a line of "), "{errors:?}");
        // A line of exactly the limit is read.
        let (summary, _) = read_max(format!("{SPAN}\n").as_bytes(), SPAN.len());
        assert_eq!(summary.spans, 1);
    }

    #[test]
    fn records_over_the_limit_are_skipped_by_their_length() {
        let one = proto_records(1);
        let max = one.len() - 4;
        let mut data = one.clone();
        data.extend_from_slice(&((max + 1) as u32).to_be_bytes());
        data.extend(std::iter::repeat_n(7_u8, max + 1));
        data.extend_from_slice(&one);
        let (summary, errors) = read_max(&data, max);
        assert_eq!((summary.spans, summary.errors), (2, 1), "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "t: record 2 (byte {}): a record of {} bytes, over the limit",
                one.len(),
                max + 1
            )),
            "{errors:?}"
        );
        // A zstd record of the older form that decompresses beyond the limit.
        let mut framed = Vec::new();
        for record in [SPAN.as_bytes(), &[b' '; 4096][..], SPAN.as_bytes()] {
            let frame = zstd::stream::encode_all(record, 1).expect("zstd");
            framed.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            framed.extend_from_slice(&frame);
        }
        let (summary, errors) = read_max(&framed, SPAN.len());
        assert_eq!((summary.spans, summary.errors), (2, 1), "{errors:?}");
        assert!(
            errors[0].contains(": record 2 (byte ") && errors[0].contains("decompresses to more"),
            "{errors:?}"
        );
    }

    #[test]
    fn empty_records_are_counted_in_bulk() {
        let mut data = vec![0_u8; 4 * 100_000];
        data.extend(proto_records(1));
        data.extend([0_u8; 8]);
        let (summary, errors) = read(&data, InputFormat::Proto);
        assert_eq!(
            (summary.records, summary.spans, summary.errors),
            (100_003, 1, 0),
            "{errors:?}"
        );
        assert_eq!(summary.bytes, data.len() as u64);
    }

    #[test]
    fn a_zstd_window_beyond_the_limit_is_refused() {
        // A frame header asking for a 2 GiB window (window descriptor 21 << 3).
        let mut data = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3];
        data.extend([0x01, 0x00, 0x00]); // an empty last raw block
        let (summary, errors) = read(&data, InputFormat::Auto);
        assert_eq!((summary.records, summary.errors), (0, 1), "{errors:?}");
        assert!(errors[0].contains("cannot read"), "{errors:?}");
    }
}

// The examples of this module, as unit tests (the module is internal to the crate).
#[cfg(test)]
mod examples {
    #[test]
    fn example_inputformat() -> Result<(), Box<dyn std::error::Error>> {
        use crate::replay::InputFormat;
        assert_eq!("proto".parse::<InputFormat>(), Ok(InputFormat::Proto));
        assert_eq!(InputFormat::default(), InputFormat::Auto);
        Ok(())
    }
}
