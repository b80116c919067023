//! File and directory digests with record counts.
//!
//! Files are hashed with blake3; large files are memory-mapped and split into BLAKE3 subtrees
//! hashed on all cores (the same tree split blake3's own rayon code uses, through its `hazmat`
//! API), and each leaf counts records while its bytes are hot in cache, so counting costs almost
//! nothing on top of hashing. A directory of shards is hashed over its sorted listing of
//! `(relative path, size, blake3)`.

use std::path::Path;

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};

/// Files at least this big are memory-mapped and hashed in parallel.
pub const MMAP_THRESHOLD: u64 = 1 << 20;
/// Leaves of the parallel split.
const LEAF: usize = 1 << 20;
/// Bytes hashed between record counts inside a leaf (stays in L1/L2).
const PIECE: usize = 16 * 1024;

/// Counts of line-oriented records in a byte range.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineCounts {
    /// `\n` bytes.
    pub newlines: u64,
    /// Lines that are empty or only `\r`.
    pub blank: u64,
}

impl LineCounts {
    fn add(&mut self, o: LineCounts) {
        self.newlines += o.newlines;
        self.blank += o.blank;
    }

    /// Non-blank lines of a whole file whose counts are `self`.
    pub fn records(&self, data_len: usize, last: Option<u8>, tail_blank: bool) -> u64 {
        let mut lines = self.newlines;
        if data_len > 0 && last != Some(b'\n') && !tail_blank {
            lines += 1;
        }
        lines - self.blank
    }
}

/// Count newlines and blank lines ending inside `full[start..end]`. Looks back up to two bytes
/// before `start`, so ranges can be counted independently.
pub fn count_lines(full: &[u8], start: usize, end: usize) -> LineCounts {
    let mut c = LineCounts::default();
    let mut i = start;
    // The first two positions need care at the start of the file.
    while i < end && i < 2 {
        if full[i] == b'\n' {
            c.newlines += 1;
            let blank = i == 0 || full[i - 1] == b'\n' || (full[i - 1] == b'\r' && i == 1);
            c.blank += blank as u64;
        }
        i += 1;
    }
    if i >= end {
        return c;
    }
    let cur = &full[i..end];
    let p1 = &full[i - 1..end - 1];
    let p2 = &full[i - 2..end - 2];
    let mut nl = 0u64;
    let mut blank = 0u64;
    // Branch-free so the compiler vectorizes it; chunked to keep the u8 lane counters exact.
    for ((c0, c1), c2) in cur.chunks(255).zip(p1.chunks(255)).zip(p2.chunks(255)) {
        let mut a = 0u8;
        let mut b = 0u8;
        for j in 0..c0.len() {
            let is_nl = (c0[j] == b'\n') as u8;
            let prev_nl = (c1[j] == b'\n') as u8;
            let prev_cr_after_nl = ((c1[j] == b'\r') & (c2[j] == b'\n')) as u8;
            a += is_nl;
            b += is_nl & (prev_nl | prev_cr_after_nl);
        }
        nl += a as u64;
        blank += b as u64;
    }
    c.newlines += nl;
    c.blank += blank;
    c
}

/// Whether the final line (after the last `\n`) is blank (`\r` only).
fn tail_is_blank(data: &[u8]) -> bool {
    match data.iter().rposition(|&b| b == b'\n') {
        Some(i) => &data[i + 1..] == b"\r",
        None => data == b"\r",
    }
}

/// Non-blank line count of a whole buffer.
pub fn line_records(data: &[u8]) -> u64 {
    count_lines(data, 0, data.len()).records(data.len(), data.last().copied(), tail_is_blank(data))
}

fn leaf(full: &[u8], start: usize, end: usize, count: bool) -> (blake3::Hasher, LineCounts) {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(start as u64);
    let mut c = LineCounts::default();
    let mut s = start;
    while s < end {
        let e = (s + PIECE).min(end);
        h.update(&full[s..e]);
        if count {
            c.add(count_lines(full, s, e));
        }
        s = e;
    }
    (h, c)
}

fn subtree(full: &[u8], start: usize, end: usize, count: bool) -> (ChainingValue, LineCounts) {
    let len = end - start;
    if len <= LEAF {
        let (h, c) = leaf(full, start, end, count);
        return (h.finalize_non_root(), c);
    }
    let left = hazmat::left_subtree_len(len as u64) as usize;
    let ((lcv, lc), (rcv, rc)) = rayon::join(
        || subtree(full, start, start + left, count),
        || subtree(full, start + left, end, count),
    );
    let mut c = lc;
    c.add(rc);
    (hazmat::merge_subtrees_non_root(&lcv, &rcv, Mode::Hash), c)
}

/// blake3 of `data` (hex), plus line counts when `count` is set. Parallel for large inputs.
pub fn hash_and_count(data: &[u8], count: bool) -> (String, Option<u64>) {
    let (hash, counts) = if data.len() <= LEAF {
        let (h, c) = leaf(data, 0, data.len(), count);
        (h.finalize(), c)
    } else {
        let left = hazmat::left_subtree_len(data.len() as u64) as usize;
        let ((lcv, lc), (rcv, rc)) = rayon::join(
            || subtree(data, 0, left, count),
            || subtree(data, left, data.len(), count),
        );
        let mut c = lc;
        c.add(rc);
        (hazmat::merge_subtrees_root(&lcv, &rcv, Mode::Hash), c)
    };
    let records =
        count.then(|| counts.records(data.len(), data.last().copied(), tail_is_blank(data)));
    (hash.to_hex().to_string(), records)
}

/// Hash a file; count line records when `count_lines` is set. Large files are memory-mapped.
pub fn hash_file(path: &Path, count_lines: bool) -> std::io::Result<(String, u64, Option<u64>)> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len >= MMAP_THRESHOLD {
        // SAFETY: the map is read-only and dropped before we return. If another process
        // truncates the file while we hash it we may read zeros or get SIGBUS; the state cache
        // and `lock --verify` re-hash on any size/mtime change, and datasets are not expected to
        // be edited while medrun reads them (documented in docs/reference/lock.md).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let (h, r) = hash_and_count(&map, count_lines);
        Ok((h, len, r))
    } else {
        let bytes = std::fs::read(path)?;
        let (h, r) = hash_and_count(&bytes, count_lines);
        Ok((h, bytes.len() as u64, r))
    }
}

/// Count JSON records: array length, object key count, or 1 for a scalar.
pub fn json_records(bytes: &[u8]) -> Result<u64, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(bytes)?;
    Ok(match v {
        serde_json::Value::Array(a) => a.len() as u64,
        serde_json::Value::Object(o) => o.len() as u64,
        _ => 1,
    })
}

/// Count non-empty CSV rows, honouring quoted fields that span lines.
pub fn csv_rows(bytes: &[u8]) -> u64 {
    let mut rows = 0u64;
    let mut in_quotes = false;
    let mut row_has_content = false;
    for &b in bytes {
        match b {
            b'"' => {
                in_quotes = !in_quotes;
                row_has_content = true;
            }
            b'\n' if !in_quotes => {
                if row_has_content {
                    rows += 1;
                }
                row_has_content = false;
            }
            b'\r' if !in_quotes => {}
            _ => row_has_content = true,
        }
    }
    if row_has_content {
        rows += 1;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parallel_hash_matches_blake3() {
        for len in [
            0usize,
            1,
            1023,
            1024,
            1025,
            LEAF - 1,
            LEAF,
            LEAF + 1,
            3 * LEAF + 12345,
            5 * LEAF,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (h, _) = hash_and_count(&data, true);
            assert_eq!(h, blake3::hash(&data).to_hex().to_string(), "len {len}");
        }
    }

    fn naive_records(data: &[u8]) -> u64 {
        let text = String::from_utf8_lossy(data);
        text.split('\n')
            .enumerate()
            .filter(|(i, l)| {
                // the piece after a final '\n' is not a line
                !(l.is_empty() && *i == text.split('\n').count() - 1)
            })
            .filter(|(_, l)| !l.is_empty() && *l != "\r")
            .count() as u64
    }

    #[test]
    fn line_records_cases() {
        assert_eq!(line_records(b""), 0);
        assert_eq!(line_records(b"a"), 1);
        assert_eq!(line_records(b"a\n"), 1);
        assert_eq!(line_records(b"a\n\nb\n"), 2);
        assert_eq!(line_records(b"\n\na"), 1);
        assert_eq!(line_records(b"a\r\n\r\nb\r\n"), 2);
        assert_eq!(line_records(b"\r\na"), 1);
    }

    proptest! {
        #[test]
        fn counting_matches_naive(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'x')], 0..600)) {
            prop_assert_eq!(line_records(&data), naive_records(&data));
            // Counting in independent pieces gives the same totals.
            let mut c = LineCounts::default();
            let mut s = 0;
            while s < data.len() { let e = (s + 7).min(data.len()); c.add(count_lines(&data, s, e)); s = e; }
            prop_assert_eq!(c, count_lines(&data, 0, data.len()));
        }
    }

    #[test]
    fn csv_counts() {
        assert_eq!(csv_rows(b"a,b\n1,2\n"), 2);
        assert_eq!(csv_rows(b"a,b\n\"x\ny\",2\n\n"), 2);
        assert_eq!(csv_rows(b"a,b\r\n1,2"), 2);
    }
}
