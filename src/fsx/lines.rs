//! Reading a file line by line with a bound on the line length: a line longer than the limit
//! is skipped through (never held in memory) and reported with its size, so one 50 MB line, or
//! a file with no newline at all, costs at most the limit in memory.

use std::io::{self, BufRead, Read};

/// The outcome of [`LineReader::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A line is in the buffer, without its `\n` (a `\r` before it is kept).
    Line,
    /// The line was longer than the limit; it holds `bytes` bytes (line ending excluded) and
    /// was skipped.
    TooLong { bytes: u64 },
    /// The end of the file.
    End,
}

/// Lines of a reader, each at most `max` bytes long (not counting its line ending).
pub struct LineReader<R> {
    reader: R,
    max: u64,
    number: u64,
}

/// Bytes consumed per step while skipping an over-long line.
const SKIP_STEP: u64 = 1 << 16;

impl<R: BufRead> LineReader<R> {
    pub fn new(reader: R, max: u64) -> LineReader<R> {
        LineReader {
            reader,
            max,
            number: 0,
        }
    }

    /// 1-based number of the line last returned (0 before the first).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The limit this reader enforces.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Read the next line into `buf` (cleared first).
    pub fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<Next> {
        buf.clear();
        // The line, its `\r\n`, and one byte more to tell "exactly at the limit" from "over".
        let limit = self.max.saturating_add(2);
        let n = (&mut self.reader).take(limit).read_until(b'\n', buf)? as u64;
        if n == 0 {
            return Ok(Next::End);
        }
        self.number += 1;
        let ended = buf.last() == Some(&b'\n');
        if ended || n < limit {
            let content = content_len(buf);
            if content > self.max {
                buf.clear();
                return Ok(Next::TooLong { bytes: content });
            }
            if ended {
                buf.pop();
            }
            return Ok(Next::Line);
        }
        // Over the limit and not ended: skip to the end of the line, keeping nothing.
        let mut bytes = n;
        let mut tail_cr = buf.last() == Some(&b'\r');
        loop {
            buf.clear();
            let k = (&mut self.reader).take(SKIP_STEP).read_until(b'\n', buf)? as u64;
            if k == 0 {
                break;
            }
            bytes += k;
            if buf.last() == Some(&b'\n') {
                bytes -= 1;
                tail_cr = buf.len() >= 2 && buf[buf.len() - 2] == b'\r';
                break;
            }
            tail_cr = buf.last() == Some(&b'\r');
        }
        buf.clear();
        buf.shrink_to(SKIP_STEP as usize);
        Ok(Next::TooLong {
            bytes: bytes - u64::from(tail_cr),
        })
    }
}

/// Length of a line without its `\n`, `\r\n` or final `\r` (the readers drop all three).
fn content_len(line: &[u8]) -> u64 {
    let mut end = line.len();
    if end > 0 && line[end - 1] == b'\n' {
        end -= 1;
    }
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    end as u64
}

/// A byte count for messages: `52428800 bytes (50.0 MiB)`.
pub fn show_bytes(n: u64) -> String {
    if n < 1 << 20 {
        format!("{n} bytes")
    } else {
        format!("{n} bytes ({:.1} MiB)", n as f64 / f64::from(1u32 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8], max: u64) -> Vec<(u64, Result<String, u64>)> {
        let mut r = LineReader::new(text, max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match r.next(&mut buf).unwrap() {
                Next::End => return out,
                Next::Line => out.push((r.number(), Ok(String::from_utf8(buf.clone()).unwrap()))),
                Next::TooLong { bytes } => out.push((r.number(), Err(bytes))),
            }
        }
    }

    #[test]
    fn lines_at_and_over_the_limit() {
        let got = all(b"abc\nabcd\r\nabcde\nab\n\nxyzxyzxyz", 4);
        assert_eq!(
            got,
            [
                (1, Ok("abc".into())),
                (2, Ok("abcd\r".into())),
                (3, Err(5)),
                (4, Ok("ab".into())),
                (5, Ok(String::new())),
                (6, Err(9)),
            ]
        );
    }

    #[test]
    fn a_huge_line_is_skipped_in_bounded_memory() {
        let mut text = vec![b'x'; 3 * SKIP_STEP as usize + 17];
        text.extend_from_slice(b"\r\nnext\n");
        let got = all(&text, 10);
        assert_eq!(got, [(1, Err(3 * SKIP_STEP + 17)), (2, Ok("next".into()))]);
    }

    #[test]
    fn no_final_newline_and_exact_limit() {
        assert_eq!(all(b"abcd", 4), [(1, Ok("abcd".into()))]);
        assert_eq!(all(b"abcd\r", 4), [(1, Ok("abcd\r".into()))]);
        assert_eq!(all(b"abcde", 4), [(1, Err(5))]);
        assert_eq!(all(b"", 4), []);
    }
}
