//! Decoding JSON from the API server with a bound on its size: a watch stream line by line, or a whole response
//! body. A value up to `IN_MEMORY_BYTES` is read whole and decoded from memory (the path every real Pod takes); a
//! longer one is first copied as it arrives without its long strings (`Skim`), which proa never reads (a huge
//! annotation or environment value), then decoded from that copy. One decoder, from memory, keeps the binary small
//! and the decoding fast. The copy is what memory grows with: a Pod's JSON less its strings over `LONG_STRING`. It
//! is bounded by etcd, which stores at most 1.5 MiB of a Pod (its default `--max-request-bytes`) and whose every
//! stored byte JSON writes as at most six (`\u003c` for `<`): 9.4 MB, whatever shape the Pod has (many strings just
//! under 64 KiB are all kept). Pure over any `BufRead`: the watcher gives it the HTTP body; tests and the fuzzer give
//! it bytes.

use std::io::{self, BufRead, Read};

use serde::de::DeserializeOwned;

/// Values up to this size are decoded as they are; larger ones are skimmed first.
pub const IN_MEMORY_BYTES: usize = 256 * 1024;
/// In a skimmed value, a string longer than this (as JSON, escapes included) is read as empty: no name, uid,
/// timestamp or reason proa reads is anywhere near it.
const LONG_STRING: usize = 64 * 1024;
/// ...but an array's strings (a container's `command` and `args`, which proa matches against its own) are kept up to
/// this: the kernel runs no argument longer than 128 KiB, which JSON writes in at most six times as many bytes.
const LONG_ARRAY_STRING: usize = 1024 * 1024;

/// How one read of a JSON value ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<T> {
    /// One value.
    Value(T),
    /// Not JSON of the expected shape: the stream cannot be trusted from here on.
    Malformed(String),
    /// Longer than the bound; the rest of it was not read, so the stream must be dropped.
    TooLong,
    /// The stream ended (a partial last line is discarded: the server always ends lines with a newline).
    End,
}

/// Reads one newline-terminated line of JSON and decodes it, never reading more than `max` bytes of it. Blank
/// lines are skipped. `buf` is scratch space, kept between calls to save allocations.
pub fn read_json_line<T: DeserializeOwned>(
    reader: &mut impl BufRead,
    max: usize,
    buf: &mut Vec<u8>,
) -> io::Result<Line<T>> {
    if !skip_whitespace(reader)? {
        return Ok(Line::End);
    }
    buf.clear();
    let in_memory = max.min(IN_MEMORY_BYTES);
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(Line::End);
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = newline.unwrap_or(available.len());
        let room = in_memory - buf.len();
        if chunk > room {
            if in_memory == max {
                return Ok(Line::TooLong);
            }
            buf.extend_from_slice(&available[..room]);
            reader.consume(room);
            return skim_rest(Bounded::new(reader, buf.len(), max, true), buf);
        }
        buf.extend_from_slice(&available[..chunk]);
        reader.consume(chunk + usize::from(newline.is_some()));
        if newline.is_some() {
            return Ok(decode_slice(buf));
        }
    }
}

/// Reads a whole body of at most `max` bytes and decodes it.
pub fn read_json_body<T: DeserializeOwned>(reader: impl Read, max: usize) -> io::Result<Line<T>> {
    let mut reader = io::BufReader::new(reader);
    let mut buf = Vec::new();
    let in_memory = max.min(IN_MEMORY_BYTES);
    (&mut reader).take(in_memory as u64).read_to_end(&mut buf)?;
    if buf.len() < in_memory || reader.fill_buf()?.is_empty() {
        return Ok(decode_slice(&buf));
    }
    if in_memory == max {
        return Ok(Line::TooLong);
    }
    let taken = buf.len();
    skim_rest(Bounded::new(&mut reader, taken, max, false), &buf)
}

/// `text` as a JSON string literal, quotes included: for the few JSON values proa writes (log lines, an access
/// review), without serde_json's serializer.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Skips whitespace and blank lines; false at the end of the stream.
fn skip_whitespace(reader: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(false);
        }
        let blank = available.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let more = blank < available.len();
        reader.consume(blank);
        if more {
            return Ok(true);
        }
    }
}

fn decode_slice<T: DeserializeOwned>(bytes: &[u8]) -> Line<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Line::Value(value),
        Err(err) => Line::Malformed(err.to_string()),
    }
}

/// Skims `head` (what was read into memory) and the rest of the value as it streams in, then decodes the copy.
fn skim_rest<T: DeserializeOwned, R: BufRead>(mut rest: Bounded<'_, R>, head: &[u8]) -> io::Result<Line<T>> {
    let mut skim = Skim::default();
    skim.feed(head);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match rest.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => skim.feed(&chunk[..n]),
            Err(_) if rest.ended == Ended::TooLong => return Ok(Line::TooLong),
            Err(err) => return Err(err),
        }
    }
    Ok(match rest.ended {
        Ended::Stream if rest.lines => Line::End,
        _ => decode_slice(&skim.out),
    })
}

/// A copy of a JSON text without its long strings (each read as `""`) and without whitespace. It only tracks
/// strings and nesting; whether the text is valid JSON is for the decoder to say.
#[derive(Default)]
struct Skim {
    out: Vec<u8>,
    /// Open objects (`true`) and arrays (`false`).
    nesting: Vec<bool>,
    /// In an object, before its next member's `:`: a string here is a key, which is never dropped.
    at_key: bool,
    string: Option<Quoted>,
}

/// The string being copied.
struct Quoted {
    /// Where its opening quote is in `out`.
    start: usize,
    length: usize,
    limit: usize,
    escaped: bool,
    dropped: bool,
}

impl Skim {
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match &mut self.string {
                Some(quoted) => {
                    if !quoted.escaped && byte == b'"' {
                        self.out.push(b'"');
                        self.string = None;
                        continue;
                    }
                    quoted.escaped = !quoted.escaped && byte == b'\\';
                    quoted.length += 1;
                    if quoted.dropped {
                        continue;
                    }
                    if quoted.length > quoted.limit {
                        quoted.dropped = true;
                        self.out.truncate(quoted.start + 1);
                    } else {
                        self.out.push(byte);
                    }
                }
                None => self.structure(byte),
            }
        }
    }

    fn structure(&mut self, byte: u8) {
        match byte {
            b'"' => {
                let limit = match self.nesting.last() {
                    Some(true) if self.at_key => usize::MAX,
                    Some(false) => LONG_ARRAY_STRING,
                    _ => LONG_STRING,
                };
                let start = self.out.len();
                self.string = Some(Quoted { start, length: 0, limit, escaped: false, dropped: false });
            }
            b'{' | b'[' => {
                self.nesting.push(byte == b'{');
                self.at_key = byte == b'{';
            }
            b'}' | b']' => {
                self.nesting.pop();
                self.at_key = false;
            }
            b':' => self.at_key = false,
            b',' => self.at_key = self.nesting.last() == Some(&true),
            byte if byte.is_ascii_whitespace() => return,
            _ => {}
        }
        self.out.push(byte);
    }
}

/// Why a `Bounded` reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Not,
    /// At the newline that ends the line (consumed).
    Newline,
    /// The underlying stream ended.
    Stream,
    /// The bound was reached.
    TooLong,
}

/// A reader over the rest of one value: it ends at a newline (when `lines`) or at the end of the stream, and fails
/// once more than `max` bytes in all were asked of it.
struct Bounded<'a, R> {
    inner: &'a mut R,
    taken: usize,
    max: usize,
    lines: bool,
    ended: Ended,
}

impl<'a, R: BufRead> Bounded<'a, R> {
    fn new(inner: &'a mut R, taken: usize, max: usize, lines: bool) -> Self {
        Bounded { inner, taken, max, lines, ended: Ended::Not }
    }
}

impl<R: BufRead> Read for Bounded<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.ended != Ended::Not || out.is_empty() {
            return Ok(0);
        }
        let available = self.inner.fill_buf()?;
        if available.is_empty() {
            self.ended = Ended::Stream;
            return Ok(0);
        }
        // Only as much as `out` takes is looked at: serde_json asks for one byte at a time.
        let window = &available[..available.len().min(out.len())];
        let newline = if self.lines { window.iter().position(|&b| b == b'\n') } else { None };
        let (n, ends) = match newline {
            Some(at) => (at, true),
            None => (window.len(), false),
        };
        if self.taken + n > self.max {
            self.ended = Ended::TooLong;
            return Err(io::Error::other("longer than the bound"));
        }
        out[..n].copy_from_slice(&available[..n]);
        self.inner.consume(n + usize::from(ends));
        self.taken += n;
        if ends {
            self.ended = Ended::Newline;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// A reader that hands out its bytes in the given pieces, as a network stream would.
    struct Pieces(Vec<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = &mut self.0[0];
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    #[test]
    fn quoted_strings_are_json() {
        for text in ["plain", "a \"quote\" and a \\", "lines\nand\ttabs\r", "\u{1}\u{1f}", "ünï ☃"] {
            let quoted = quote(text);
            assert_eq!(serde_json::from_str::<String>(&quoted).unwrap(), text, "{quoted}");
        }
        assert_eq!(quote("a\u{1}"), r#""a\u0001""#);
    }

    fn reader(pieces: &[&str]) -> BufReader<Pieces> {
        BufReader::with_capacity(4, Pieces(pieces.iter().map(|p| p.as_bytes().to_vec()).collect()))
    }

    fn lines(pieces: &[&str], max: usize) -> Vec<Line<serde_json::Value>> {
        let mut reader = reader(pieces);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_json_line(&mut reader, max, &mut buf).unwrap();
            let done = !matches!(line, Line::Value(_));
            out.push(line);
            if done {
                return out;
            }
        }
    }

    fn value(text: &str) -> Line<serde_json::Value> {
        Line::Value(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn lines_split_at_awkward_points() {
        assert_eq!(
            lines(&["{\"a\"", ":1}\n{", "\"b\":2}\n", "\n", "  \n"], 100),
            vec![value(r#"{"a":1}"#), value(r#"{"b":2}"#), Line::End]
        );
    }

    #[test]
    fn partial_last_line_is_not_a_line() {
        assert_eq!(lines(&["{\"a\":1}\n{\"tru"], 100).last().unwrap(), &Line::End);
    }

    #[test]
    fn oversized_line_stops_without_reading_it() {
        let big = format!("[{}1]", "1,".repeat(50));
        let result = lines(&["[1]\n", &big, "\n"], 10);
        assert_eq!(result, vec![value("[1]"), Line::TooLong]);
    }

    #[test]
    fn exactly_the_bound_is_fine() {
        assert_eq!(lines(&["[1234567]\n"], 9)[0], value("[1234567]"));
    }

    #[test]
    fn malformed_line() {
        assert!(matches!(lines(&["{nope}\n"], 100)[0], Line::Malformed(_)));
    }

    /// A line larger than `IN_MEMORY_BYTES`: decoded while it streams in, with the same results.
    fn streamed(text: &str, max: usize) -> Vec<Line<serde_json::Value>> {
        let mut reader = BufReader::with_capacity(1000, text.as_bytes());
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_json_line(&mut reader, max, &mut buf).unwrap();
            let done = !matches!(line, Line::Value(_));
            out.push(line);
            if done {
                assert!(buf.capacity() <= 2 * IN_MEMORY_BYTES, "held {} bytes", buf.capacity());
                return out;
            }
        }
    }

    #[test]
    fn long_lines_are_skimmed_of_their_long_strings() {
        let big = format!(r#"{{"skip":"{}","keep":1}}"#, "<".repeat(IN_MEMORY_BYTES * 2));
        let text = format!("{big}\n[2]\n");
        let result = streamed(&text, IN_MEMORY_BYTES * 3);
        assert_eq!(result, [value(r#"{"skip":"","keep":1}"#), value("[2]"), Line::End]);
        assert!(matches!(streamed(&text, IN_MEMORY_BYTES * 2)[..], [Line::TooLong]));
        assert!(matches!(streamed(&big, IN_MEMORY_BYTES * 3)[..], [Line::End]), "no newline: a partial line");
        let broken = format!("{}\n", &big[..big.len() - 3]);
        assert!(matches!(streamed(&broken, IN_MEMORY_BYTES * 3)[..], [Line::Malformed(_), ..]));
    }

    #[test]
    fn bodies_whole_or_streamed() {
        let read = |text: &str, max| read_json_body::<serde_json::Value>(text.as_bytes(), max).unwrap();
        assert_eq!(read("{\"a\":\n1}\n", 100), value(r#"{"a":1}"#));
        assert_eq!(read("[1,2,3]", 5), Line::TooLong);
        let big = format!("[\"{}\"]", "x".repeat(IN_MEMORY_BYTES));
        assert!(read(&big, IN_MEMORY_BYTES * 2) == value(&big), "an array's string is kept up to 1 MiB");
        assert!(matches!(read(&big, IN_MEMORY_BYTES + 3), Line::TooLong));
    }

    #[test]
    fn skimming_keeps_keys_short_strings_and_command_lines_and_drops_the_rest() {
        let skim = |text: &str| {
            let mut skim = Skim::default();
            // Fed in pieces, as a stream comes.
            text.as_bytes().chunks(7).for_each(|piece| skim.feed(piece));
            String::from_utf8(skim.out).unwrap()
        };
        let long = "a".repeat(LONG_STRING + 1);
        let escaped = format!("{}\\\"", "b".repeat(LONG_STRING - 1));
        let text = format!(
            r#"{{ "metadata": {{"name": "job", "annotations": {{"big": "{long}", "{long}": 1}}}},
               "spec": {{"containers": [{{"args": ["{long}", "x\"y"], "env": [{{"name": "A", "value": "{escaped}"}}]}}]}} }}"#
        );
        let expected = format!(
            r#"{{"metadata":{{"name":"job","annotations":{{"big":"","{long}":1}}}},"spec":{{"containers":[{{"args":["{long}","x\"y"],"env":[{{"name":"A","value":""}}]}}]}}}}"#
        );
        assert!(skim(&text) == expected, "{}", &skim(&text)[..200]);
        let huge_arg = format!(r#"["{}",1]"#, "c".repeat(LONG_ARRAY_STRING + 1));
        assert_eq!(skim(&huge_arg), r#"["",1]"#);
        assert_eq!(skim(r#"{"a":"\"}"}"#), r#"{"a":"\"}"}"#, "an escaped quote does not end a string");
    }
}
