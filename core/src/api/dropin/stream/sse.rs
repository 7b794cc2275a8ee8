//! Server-sent events (the WHATWG `text/event-stream` format): an incremental parser fed
//! arbitrary byte chunks, with a bound on one event's size, and the encoder of one event.
//!
//! Lines end in `\n`, `\r\n` or `\r` (a `\r` ending one chunk and a `\n` starting the next are
//! one line end); `field: value` with one leading space of the value stripped; `data` lines are
//! joined with `\n`; `event` names the event; `id` and `retry` are read and not kept; a line
//! starting with `:` is a comment; a blank line dispatches the event, if it has any `data` line
//! (as the spec says). A leading byte-order mark is skipped. Lines are split on bytes before
//! they are decoded, so a chunk may end anywhere, even inside a UTF-8 sequence; invalid UTF-8 is
//! replaced with U+FFFD, as the spec decodes. An event not yet ended by a blank line when the
//! stream ends is never dispatched.

use std::fmt;

/// Largest event the parser holds: the bytes of its lines (terminators included) from its first
/// line to the blank line that ends it. Provider events are a few hundred bytes; a tool input or
/// a long thinking signature arrives in pieces, never as one megabyte.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One dispatched event: its `event:` name (`None` when absent or empty, which the spec calls
/// `message`) and its data lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Why the parser refused part of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// An event grew past the limit: its bytes are skipped up to the blank line that ends it,
    /// and parsing goes on after it.
    EventTooLarge { limit: usize },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::EventTooLarge { limit } => {
                write!(f, "server-sent event larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for SseError {}

/// The incremental parser. Memory is bounded by its limit: the partial line, the event's data
/// and its name together never exceed it.
#[derive(Debug, Clone)]
pub struct SseParser {
    limit: usize,
    /// The current line's bytes, not yet ended (not kept while skipping).
    line: Vec<u8>,
    /// The current line's length, counted while skipping too.
    line_len: usize,
    /// The previous byte was a `\r` that ended a line: a `\n` right after it belongs to it.
    after_cr: bool,
    /// Bytes of a leading byte-order mark seen so far; `None` once past the stream's start.
    bom_seen: Option<usize>,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// Bytes of the current event so far, terminators and the partial line included.
    event_bytes: usize,
    /// The current event went over the limit: its lines are dropped up to the blank line.
    skipping: bool,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser refusing events over [`MAX_EVENT_BYTES`].
    pub fn new() -> SseParser {
        SseParser::with_limit(MAX_EVENT_BYTES)
    }

    /// A parser refusing events over `limit` bytes.
    pub fn with_limit(limit: usize) -> SseParser {
        SseParser {
            limit,
            line: Vec::new(),
            line_len: 0,
            after_cr: false,
            bom_seen: Some(0),
            event: None,
            data: String::new(),
            has_data: false,
            event_bytes: 0,
            skipping: false,
        }
    }

    /// Feeds the next bytes of the stream; returns the events they complete, in order, with an
    /// error in its place for each event refused as too large.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<SseEvent, SseError>> {
        let mut out = Vec::new();
        let rest = self.skip_bom(chunk, &mut out);
        let mut i = 0;
        while i < rest.len() {
            let b = rest[i];
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                i += 1;
                continue;
            }
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                self.event_bytes += 1;
                self.end_line(&mut out);
                i += 1;
                continue;
            }
            // The run of bytes up to the next line end, taken at once.
            let end = rest[i..]
                .iter()
                .position(|&c| c == b'\n' || c == b'\r')
                .map_or(rest.len(), |p| i + p);
            self.take_bytes(&rest[i..end], &mut out);
            i = end;
        }
        out
    }

    /// Consumes the bytes of a leading byte-order mark, possibly split across chunks; bytes
    /// that turn out not to be one are content.
    fn skip_bom<'a>(
        &mut self,
        chunk: &'a [u8],
        out: &mut Vec<Result<SseEvent, SseError>>,
    ) -> &'a [u8] {
        let Some(mut seen) = self.bom_seen else {
            return chunk;
        };
        let mut i = 0;
        while seen < BOM.len() && i < chunk.len() {
            if chunk[i] != BOM[seen] {
                self.bom_seen = None;
                self.take_bytes(&BOM[..seen], out);
                return &chunk[i..];
            }
            seen += 1;
            i += 1;
        }
        self.bom_seen = if seen == BOM.len() { None } else { Some(seen) };
        &chunk[i..]
    }

    /// Adds bytes (no line end among them) to the current line, or refuses the event when
    /// they take it past the limit.
    fn take_bytes(&mut self, run: &[u8], out: &mut Vec<Result<SseEvent, SseError>>) {
        if run.is_empty() {
            return;
        }
        self.line_len += run.len();
        self.event_bytes += run.len();
        if self.skipping {
            return;
        }
        if self.event_bytes > self.limit {
            self.skipping = true;
            self.line = Vec::new();
            self.data = String::new();
            self.event = None;
            self.has_data = false;
            out.push(Err(SseError::EventTooLarge { limit: self.limit }));
            return;
        }
        self.line.extend_from_slice(run);
    }

    fn end_line(&mut self, out: &mut Vec<Result<SseEvent, SseError>>) {
        let blank = std::mem::take(&mut self.line_len) == 0;
        if self.skipping {
            if blank {
                self.skipping = false;
                self.event_bytes = 0;
            }
            return;
        }
        if blank {
            self.dispatch(out);
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.process_line(&String::from_utf8_lossy(&line));
        if self.event_bytes > self.limit {
            // Only line ends took it over: refuse it all the same.
            self.skipping = true;
            self.data = String::new();
            self.event = None;
            self.has_data = false;
            out.push(Err(SseError::EventTooLarge { limit: self.limit }));
        }
    }

    fn process_line(&mut self, line: &str) {
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id` and `retry` are valid fields the relay has no use for; others are ignored.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Result<SseEvent, SseError>>) {
        let event = self.event.take().filter(|e| !e.is_empty());
        let data = std::mem::take(&mut self.data);
        self.event_bytes = 0;
        if std::mem::take(&mut self.has_data) {
            out.push(Ok(SseEvent { event, data }));
        }
    }
}

/// The bytes of one event: an `event:` line when named, one `data:` line per line of `data`
/// (split on `\n`, `\r\n` or `\r`), and the blank line that dispatches it. Line ends in the
/// name are dropped.
pub fn encode(event: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(name) = event {
        out.push_str("event: ");
        out.extend(name.chars().filter(|c| *c != '\n' && *c != '\r'));
        out.push('\n');
    }
    let normalized;
    let data = if data.contains('\r') {
        normalized = data.replace("\r\n", "\n").replace('\r', "\n");
        normalized.as_str()
    } else {
        data
    };
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn parse_all(parser: &mut SseParser, bytes: &[u8]) -> Vec<Result<SseEvent, SseError>> {
        parser.feed(bytes)
    }

    fn events(bytes: &[u8]) -> Vec<SseEvent> {
        SseParser::new()
            .feed(bytes)
            .into_iter()
            .map(|r| r.expect("event"))
            .collect()
    }

    const STREAM: &str = "event: message_start\ndata: {\"a\": \"h\u{e9}llo \u{1F600}\"}\n\n\
        : a comment\n\
        event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n\
        data: line one\rdata:line two\r\rdata\n\n\
        id: 7\nretry: 100\nevent: message_stop\ndata: {}\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev(Some("message_start"), "{\"a\": \"h\u{e9}llo \u{1F600}\"}"),
            ev(Some("ping"), "{\"type\": \"ping\"}"),
            ev(None, "line one\nline two"),
            ev(None, ""),
            ev(Some("message_stop"), "{}"),
        ]
    }

    #[test]
    fn parses_named_events_comments_crlf_cr_and_multiline_data() {
        assert_eq!(events(STREAM.as_bytes()), expected());
    }

    #[test]
    fn a_split_at_every_byte_position_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let mut p = SseParser::new();
            let mut got = parse_all(&mut p, &bytes[..cut]);
            got.extend(parse_all(&mut p, &bytes[cut..]));
            let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(got, expected(), "cut at {cut}");
        }
    }

    #[test]
    fn a_byte_at_a_time_gives_the_same_events() {
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for b in STREAM.as_bytes() {
            got.extend(p.feed(std::slice::from_ref(b)));
        }
        let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, expected());
    }

    #[test]
    fn a_cr_ending_one_chunk_and_a_lf_starting_the_next_are_one_line_end() {
        let mut p = SseParser::new();
        let mut got = p.feed(b"data: a\r");
        got.extend(p.feed(b"\ndata: b\r\n\r"));
        got.extend(p.feed(b"\n"));
        let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![ev(None, "a\nb")]);
    }

    #[test]
    fn only_one_leading_space_is_stripped_and_a_line_without_colon_is_a_field_name() {
        assert_eq!(
            events(b"data:  two spaces\ndata\ndata:x\n\n"),
            vec![ev(None, " two spaces\n\nx")]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(events(b"event: ping\n\n: just a comment\n\n"), vec![]);
    }

    #[test]
    fn an_empty_event_name_is_none() {
        assert_eq!(events(b"event:\ndata: x\n\n"), vec![ev(None, "x")]);
    }

    #[test]
    fn an_event_not_ended_by_a_blank_line_is_never_dispatched() {
        assert_eq!(events(b"data: a\n\ndata: cut"), vec![ev(None, "a")]);
        assert_eq!(events(b"data: a\n\ndata: cut\n"), vec![ev(None, "a")]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped_even_when_split() {
        let mut p = SseParser::new();
        let mut got = p.feed(&[0xEF, 0xBB]);
        got.extend(p.feed(b"\xBFdata: x\n\n"));
        assert_eq!(got, vec![Ok(ev(None, "x"))]);
        // Only at the very start.
        assert_eq!(
            events(b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"),
            vec![ev(None, "x")]
        );
    }

    #[test]
    fn a_utf8_sequence_split_across_chunks_is_decoded_whole() {
        let bytes = "data: \u{1F600}\n\n".as_bytes();
        let mut p = SseParser::new();
        let mut got = p.feed(&bytes[..8]);
        got.extend(p.feed(&bytes[8..]));
        assert_eq!(got, vec![Ok(ev(None, "\u{1F600}"))]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(events(b"data: a\xFFb\n\n"), vec![ev(None, "a\u{FFFD}b")]);
    }

    #[test]
    fn an_event_over_the_limit_is_refused_and_parsing_resumes_after_it() {
        let mut p = SseParser::with_limit(64);
        let big = format!("data: {}\ndata: more\n\ndata: after\n\n", "x".repeat(100));
        let got = p.feed(big.as_bytes());
        assert_eq!(
            got,
            vec![
                Err(SseError::EventTooLarge { limit: 64 }),
                Ok(ev(None, "after"))
            ]
        );
        // Split anywhere, the same.
        for cut in 0..big.len() {
            let mut p = SseParser::with_limit(64);
            let mut got = p.feed(&big.as_bytes()[..cut]);
            got.extend(p.feed(&big.as_bytes()[cut..]));
            assert_eq!(
                got,
                vec![
                    Err(SseError::EventTooLarge { limit: 64 }),
                    Ok(ev(None, "after"))
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn many_small_lines_count_toward_the_limit() {
        let mut p = SseParser::with_limit(64);
        let many = format!("{}\ndata: ok\n\n", "data: a\n".repeat(20));
        assert_eq!(
            p.feed(many.as_bytes()),
            vec![
                Err(SseError::EventTooLarge { limit: 64 }),
                Ok(ev(None, "ok"))
            ]
        );
    }

    #[test]
    fn events_below_the_limit_pass_one_after_another() {
        let mut p = SseParser::with_limit(32);
        let stream = "data: 0123456789\n\n".repeat(50);
        assert_eq!(p.feed(stream.as_bytes()).len(), 50);
    }

    #[test]
    fn encode_writes_one_data_line_per_line_and_parses_back() {
        let text = encode(Some("message_delta"), "a\nb\r\nc\rd");
        assert_eq!(
            text,
            "event: message_delta\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(
            events(text.as_bytes()),
            vec![ev(Some("message_delta"), "a\nb\nc\nd")]
        );
        assert_eq!(encode(None, ""), "data: \n\n");
        assert_eq!(events(encode(None, "").as_bytes()), vec![ev(None, "")]);
        assert_eq!(encode(Some("a\nb"), "x"), "event: ab\ndata: x\n\n");
    }
}
