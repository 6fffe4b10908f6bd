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

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use super::model::SpanRec;
use super::otlp;

/// How the records of a file are encoded.
///
/// ```
/// use omni_metrics::replay::InputFormat;
/// assert_eq!("proto".parse::<InputFormat>(), Ok(InputFormat::Proto));
/// assert_eq!(InputFormat::default(), InputFormat::Auto);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputFormat {
    /// From the file's extension (`.json`, `.jsonl`, `.ndjson`; `.pb`, `.binpb`, `.proto`;
    /// before any `.gz` or `.zst`), else from the content: data (once decompressed) that
    /// starts with `{`, white space or any byte a length prefix of at most
    /// [`MAX_RECORD_BYTES`] cannot start with is JSON lines, anything else length-prefixed
    /// protobuf.
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

/// The largest record accepted (a length prefix above it is taken for corruption).
pub const MAX_RECORD_BYTES: usize = 256 << 20;

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

/// A record of a trace file that could not be read; the rest of the file still is (unless
/// [`ReadError::stopped`] says the file could not be read further).
///
/// Its message names the file and the line (JSON) or record (protobuf), for logging:
/// `records.json:17: not OTLP JSON: expected value at line 1 column 1`.
#[derive(Debug, thiserror::Error)]
#[error("{file}{place}: {message}{}", if *.stopped { " (the rest of the file cannot be read)" } else { "" })]
pub struct ReadError {
    file: String,
    place: PlaceDisplay,
    message: String,
    stopped: bool,
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
    fn new(file: &str, place: Place, message: impl fmt::Display, stopped: bool) -> Self {
        Self {
            file: file.to_owned(),
            place: PlaceDisplay(place),
            message: message.to_string(),
            stopped,
        }
    }

    /// The file `file` cannot be opened.
    pub(crate) fn unopenable(file: &str, error: &io::Error) -> Self {
        Self::new(file, Place::File, format!("cannot open: {error}"), true)
    }

    /// The file, as it was named.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line of a JSON file (from 1), if the error is about one.
    pub fn line(&self) -> Option<u64> {
        match self.place.0 {
            Place::Line(n) => Some(n),
            _ => None,
        }
    }

    /// Whether the file could not be read past this error (a broken compressed stream, a
    /// corrupt length prefix, a file that cannot be opened).
    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

/// What reading one file gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Records (lines, messages) decoded.
    pub records: u64,
    /// Spans in them.
    pub spans: u64,
    /// Records that could not be read (each reported as a [`ReadError`]).
    pub errors: u64,
}

/// Reads every record of `reader`, handing the spans of each to `spans` and each bad record
/// to `on_error`. Never fails as a whole: a file that cannot be read at all is one error.
pub(crate) fn read_records(
    file: &str,
    reader: impl Read,
    format: InputFormat,
    spans: &mut dyn FnMut(Vec<SpanRec>),
    on_error: &mut dyn FnMut(ReadError),
) -> FileSummary {
    let mut records = Records::new(file, Box::new(reader), format);
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
        r: Box<dyn Read + 'a>,
        compressed: bool,
        index: u64,
        offset: u64,
    },
    Done,
}

/// The records of one file, read one at a time (a pull reader: the replay reads several
/// files in step).
pub(crate) struct Records<'a> {
    file: String,
    format: InputFormat,
    mode: Mode<'a>,
    /// The last raw record (a line, or a decompressed message).
    buf: Vec<u8>,
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
    pub(crate) fn new(file: &str, reader: Box<dyn Read + 'a>, format: InputFormat) -> Self {
        Self {
            file: file.to_owned(),
            format,
            mode: Mode::Start(reader),
            buf: Vec::new(),
            summary: FileSummary::default(),
        }
    }

    fn error(
        &mut self,
        on_error: &mut dyn FnMut(ReadError),
        place: Place,
        message: impl fmt::Display,
        stopped: bool,
    ) {
        self.summary.errors += 1;
        on_error(ReadError::new(&self.file, place, message, stopped));
        if stopped {
            self.mode = Mode::Done;
        }
    }

    /// Recognizes compression and encoding from the head of the data.
    fn start(&mut self, reader: Box<dyn Read + 'a>, on_error: &mut dyn FnMut(ReadError)) {
        let mut r = BufReader::with_capacity(1 << 18, reader);
        let head = match r.fill_buf() {
            Ok(head) => head,
            Err(e) => return self.error(on_error, Place::File, format!("cannot read: {e}"), true),
        };
        let stream: Box<dyn BufRead + 'a> = if head.starts_with(&GZIP_MAGIC) {
            Box::new(BufReader::with_capacity(
                1 << 18,
                flate2::read::MultiGzDecoder::new(r),
            ))
        } else if head.starts_with(&ZSTD_MAGIC) {
            match zstd::stream::read::Decoder::with_buffer(r) {
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
                // A length prefix of at most MAX_RECORD_BYTES starts with 0x00..=0x10.
                Ok([first, ..]) => *first > 0x10 || first.is_ascii_whitespace(),
                Err(e) => {
                    return self.error(on_error, Place::File, format!("cannot read: {e}"), true);
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
            match std::mem::replace(&mut self.mode, Mode::Done) {
                Mode::Done => return None,
                Mode::Start(reader) => self.start(reader, on_error),
                Mode::Lines { mut r, n } => {
                    let n = n + 1;
                    self.buf.clear();
                    match r.read_until(b'\n', &mut self.buf) {
                        Ok(0) => return None,
                        Ok(_) => {}
                        Err(e) => {
                            self.error(on_error, Place::Line(n), format!("cannot read: {e}"), true);
                            return None;
                        }
                    }
                    self.mode = Mode::Lines { r, n };
                    if !self.buf.trim_ascii().is_empty() {
                        return Some((Place::Line(n), Encoding::Json));
                    }
                }
                Mode::Framed {
                    mut r,
                    compressed,
                    index,
                    offset,
                } => {
                    let index = index + 1;
                    let place = Place::Record { index, offset };
                    let mut len = [0_u8; 4];
                    match read_full(&mut r, &mut len) {
                        Ok(0) => return None,
                        Ok(4) => {}
                        Ok(_) => {
                            self.error(on_error, place, "truncated length prefix", true);
                            return None;
                        }
                        Err(e) => {
                            self.error(on_error, place, format!("cannot read: {e}"), true);
                            return None;
                        }
                    }
                    let len = u32::from_be_bytes(len) as usize;
                    if len > MAX_RECORD_BYTES {
                        self.error(
                            on_error,
                            place,
                            format!(
                                "a record of {len} bytes is not plausible (corrupt length prefix?)"
                            ),
                            true,
                        );
                        return None;
                    }
                    self.buf.resize(len, 0);
                    match read_full(&mut r, &mut self.buf) {
                        Ok(got) if got == len => {}
                        Ok(got) => {
                            self.error(
                                on_error,
                                place,
                                format!("truncated record: {got} of {len} bytes"),
                                true,
                            );
                            return None;
                        }
                        Err(e) => {
                            self.error(on_error, place, format!("cannot read: {e}"), true);
                            return None;
                        }
                    }
                    self.mode = Mode::Framed {
                        r,
                        compressed,
                        index,
                        offset: offset + 4 + len as u64,
                    };
                    if !compressed {
                        return Some((place, Encoding::Proto));
                    }
                    match zstd::stream::decode_all(&self.buf[..]) {
                        Ok(data) => {
                            self.buf = data;
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
                            return Some((place, encoding));
                        }
                        Err(e) => {
                            self.error(on_error, place, format!("not a zstd frame: {e}"), false)
                        }
                    }
                }
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
    ) -> Option<Vec<SpanRec>> {
        let result = match encoding {
            Encoding::Json => otlp::decode_json(self.buf.trim_ascii()),
            Encoding::Proto => otlp::decode_proto(&self.buf),
        };
        match result {
            Ok(spans) => {
                self.summary.records += 1;
                self.summary.spans += spans.len() as u64;
                Some(spans)
            }
            Err(e) => {
                self.error(on_error, place, e, false);
                None
            }
        }
    }

    /// The spans of the next record that holds any (records that cannot be read go to
    /// `on_error`); `None` at the end of the file.
    pub(crate) fn next(&mut self, on_error: &mut dyn FnMut(ReadError)) -> Option<Vec<SpanRec>> {
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
        let summary = read_records("t", bytes, format, &mut |_| {}, &mut |e| {
            errors.push(e.to_string())
        });
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
        assert_eq!(
            summary,
            FileSummary {
                records: 2,
                spans: 2,
                errors: 1
            }
        );
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
}
