//! Reading a watch stream line by line without ever holding more than a bound of one line, whatever the
//! server sends. Pure over any `BufRead`: the watcher gives it the HTTP body; tests and the fuzzer give it bytes.

use std::io::{self, BufRead};

/// How one call of `read_line_bounded` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// `line` holds one line, without its newline.
    Complete,
    /// The line is longer than the bound; the rest of it was not read, so the stream must be dropped.
    TooLong,
    /// The stream ended (a partial last line is discarded: the server always ends lines with a newline).
    End,
}

/// Reads one newline-terminated line into `line` without ever holding more than `max` bytes of it.
pub fn read_line_bounded(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    line.clear();
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(Line::End);
        }
        let newline = buffer.iter().position(|&b| b == b'\n');
        let chunk = &buffer[..newline.unwrap_or(buffer.len())];
        if line.len() + chunk.len() > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            return Ok(Line::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

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

    fn lines(pieces: &[&str], max: usize) -> Vec<(Line, String)> {
        let mut reader = BufReader::with_capacity(4, Pieces(pieces.iter().map(|p| p.as_bytes().to_vec()).collect()));
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            let result = read_line_bounded(&mut reader, &mut line, max).unwrap();
            let done = result != Line::Complete;
            out.push((result, String::from_utf8_lossy(&line).into_owned()));
            if done {
                return out;
            }
        }
    }

    #[test]
    fn lines_split_at_awkward_points() {
        assert_eq!(
            lines(&["{\"a\"", ":1}\n{", "\"b\":2}\n", "\n"], 100),
            vec![
                (Line::Complete, "{\"a\":1}".into()),
                (Line::Complete, "{\"b\":2}".into()),
                (Line::Complete, "".into()),
                (Line::End, "".into()),
            ]
        );
    }

    #[test]
    fn partial_last_line_is_not_a_line() {
        assert_eq!(lines(&["{\"a\":1}\n{\"tru"], 100).last().unwrap().0, Line::End);
    }

    #[test]
    fn oversized_line_stops_without_buffering_it() {
        let big = "x".repeat(50);
        let result = lines(&["ok\n", &big, "\n"], 10);
        assert_eq!(result[0], (Line::Complete, "ok".into()));
        assert_eq!(result[1].0, Line::TooLong);
        assert!(result[1].1.len() <= 10);
    }

    #[test]
    fn exactly_the_bound_is_fine() {
        assert_eq!(lines(&["0123456789\n"], 10)[0], (Line::Complete, "0123456789".into()));
    }
}
