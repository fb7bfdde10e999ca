//! The watch-line decoder: arbitrary bytes, delivered in arbitrary pieces, through the bounded JSON line reader
//! and the event decoder. Neither may panic, and a read never takes more than the bound from the stream.
#![no_main]

#[allow(dead_code)] // each target uses a part
#[path = "../../src/lines.rs"]
mod lines;
#[allow(dead_code)] // each target uses a part
#[path = "../../src/pod.rs"]
mod pod;

use std::io::{self, BufReader, Read};

use libfuzzer_sys::fuzz_target;

/// The bound, small so that the fuzzer reaches it often.
const MAX: usize = 512;

/// Hands out `data` in pieces whose sizes come from `sizes`, as a network stream would.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes.first().map_or(usize::MAX, |&s| usize::from(s) + 1);
        self.sizes = self.sizes.get(1..).unwrap_or_default();
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let split = input.first().map_or(0, |&b| usize::from(b) % 16).min(input.len().saturating_sub(1));
    let (sizes, data) = input.get(1..).unwrap_or_default().split_at(split.min(input.len().saturating_sub(1)));
    let mut reader = BufReader::with_capacity(64, Pieces { data, sizes });
    let mut buf = Vec::new();
    loop {
        match lines::read_json_line::<pod::WatchEvent>(&mut reader, MAX, &mut buf) {
            Ok(lines::Line::Value(_)) => assert!(buf.len() <= MAX),
            Ok(lines::Line::Malformed(_)) => {}
            Ok(lines::Line::TooLong | lines::Line::End) | Err(_) => break,
        }
    }
    // The same bytes as a whole response body.
    let _ = lines::read_json_body::<pod::Pod>(data, MAX);
});
