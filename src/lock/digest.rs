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
const PIECE: usize = 64 * 1024;

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
/// before `start` (bytes before the file count as `\n`, so an empty first line is blank), so
/// ranges can be counted independently and the sums agree with one pass.
pub fn count_lines(full: &[u8], start: usize, end: usize) -> LineCounts {
    let at = |i: usize, back: usize| if i >= back { full[i - back] } else { b'\n' };
    // The first two bytes of the file look back before it: do them one by one.
    let head_end = end.min(start.max(2));
    let mut c = count_scalar(
        &full[start.min(head_end)..head_end],
        at(start, 1),
        at(start, 2),
    );
    let mut i = head_end;
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            let whole = (end - i) / 32 * 32;
            if whole > 0 {
                // SAFETY: the CPU supports AVX2 (checked just above).
                c.add(unsafe { avx2::count(full, i, i + whole) });
                i += whole;
            }
        }
        let whole = (end - i) / 16 * 16;
        if whole > 0 {
            c.add(sse2::count(full, i, i + whole));
            i += whole;
        }
    }
    if i < end {
        c.add(count_scalar(&full[i..end], at(i, 1), at(i, 2)));
    }
    c
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::LineCounts;
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi64, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_extract_epi64,
        _mm256_loadu_si256, _mm256_or_si256, _mm256_sad_epu8, _mm256_set1_epi8,
        _mm256_setzero_si256, _mm256_sub_epi8,
    };

    #[target_feature(enable = "avx2")]
    fn sum_bytes(v: __m256i) -> u64 {
        let s = _mm256_sad_epu8(v, _mm256_setzero_si256());
        let t = _mm256_add_epi64(
            s,
            std::arch::x86_64::_mm256_permute4x64_epi64(s, 0b01_00_11_10),
        );
        (_mm256_extract_epi64(t, 0) + _mm256_extract_epi64(t, 1)) as u64
    }

    /// The AVX2 twin of `sse2::count`, 32 bytes at a time. Needs `start >= 2` and
    /// `(end - start) % 32 == 0`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn count(full: &[u8], start: usize, end: usize) -> LineCounts {
        assert!(start >= 2 && end <= full.len() && (end - start).is_multiple_of(32));
        let mut newlines = 0u64;
        let mut blank = 0u64;
        let nlv = _mm256_set1_epi8(b'\n' as i8);
        let crv = _mm256_set1_epi8(b'\r' as i8);
        let base = full.as_ptr();
        let mut i = start;
        while i < end {
            let stop = end.min(i + 255 * 32);
            let mut acc_nl = _mm256_setzero_si256();
            let mut acc_bl = _mm256_setzero_si256();
            while i < stop {
                // SAFETY: reads of 32 bytes at `i`, `i - 1`, `i - 2`, with `2 <= i` and
                // `i + 32 <= end <= full.len()`: all inside `full`.
                let (v0, v1, v2) = unsafe {
                    (
                        _mm256_loadu_si256(base.add(i) as *const __m256i),
                        _mm256_loadu_si256(base.add(i - 1) as *const __m256i),
                        _mm256_loadu_si256(base.add(i - 2) as *const __m256i),
                    )
                };
                let nl0 = _mm256_cmpeq_epi8(v0, nlv);
                let nl1 = _mm256_cmpeq_epi8(v1, nlv);
                let cr1 = _mm256_cmpeq_epi8(v1, crv);
                let nl2 = _mm256_cmpeq_epi8(v2, nlv);
                let bl = _mm256_and_si256(nl0, _mm256_or_si256(nl1, _mm256_and_si256(cr1, nl2)));
                acc_nl = _mm256_sub_epi8(acc_nl, nl0);
                acc_bl = _mm256_sub_epi8(acc_bl, bl);
                i += 32;
            }
            newlines += sum_bytes(acc_nl);
            blank += sum_bytes(acc_bl);
        }
        LineCounts { newlines, blank }
    }
}

/// Reference implementation: `p1` and `p2` are the two bytes before `cur`.
fn count_scalar(cur: &[u8], mut p1: u8, mut p2: u8) -> LineCounts {
    let mut c = LineCounts::default();
    for &b in cur {
        if b == b'\n' {
            c.newlines += 1;
            if p1 == b'\n' || (p1 == b'\r' && p2 == b'\n') {
                c.blank += 1;
            }
        }
        p2 = p1;
        p1 = b;
    }
    c
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::LineCounts;
    use std::arch::x86_64::{
        __m128i, _mm_add_epi64, _mm_and_si128, _mm_cmpeq_epi8, _mm_cvtsi128_si64, _mm_loadu_si128,
        _mm_or_si128, _mm_sad_epu8, _mm_set1_epi8, _mm_setzero_si128, _mm_srli_si128, _mm_sub_epi8,
    };

    /// Horizontal sum of the 16 byte lanes of `v`.
    ///
    /// SAFETY: SSE2 is part of the x86_64 baseline.
    unsafe fn sum_bytes(v: __m128i) -> u64 {
        unsafe {
            let s = _mm_sad_epu8(v, _mm_setzero_si128());
            let t = _mm_add_epi64(s, _mm_srli_si128(s, 8));
            _mm_cvtsi128_si64(t) as u64
        }
    }

    /// Same result as `count_scalar` over `full[start..end]`, 16 bytes at a time.
    /// Needs `start >= 2` (it reads the two bytes before each position) and
    /// `(end - start) % 16 == 0`.
    pub fn count(full: &[u8], start: usize, end: usize) -> LineCounts {
        assert!(start >= 2 && end <= full.len() && (end - start).is_multiple_of(16));
        let mut newlines = 0u64;
        let mut blank = 0u64;
        // SAFETY: SSE2 is always available on x86_64. Every load reads 16 bytes starting at
        // `i`, `i - 1` or `i - 2` with `2 <= start <= i` and `i + 16 <= end <= full.len()`, so
        // all reads are inside `full`; `_mm_loadu_si128` allows unaligned addresses.
        unsafe {
            let nlv = _mm_set1_epi8(b'\n' as i8);
            let crv = _mm_set1_epi8(b'\r' as i8);
            let base = full.as_ptr();
            let mut i = start;
            while i < end {
                // Byte lane counters overflow after 255 steps: flush before that.
                let stop = end.min(i + 255 * 16);
                let mut acc_nl = _mm_setzero_si128();
                let mut acc_bl = _mm_setzero_si128();
                while i < stop {
                    let v0 = _mm_loadu_si128(base.add(i) as *const __m128i);
                    let v1 = _mm_loadu_si128(base.add(i - 1) as *const __m128i);
                    let v2 = _mm_loadu_si128(base.add(i - 2) as *const __m128i);
                    let nl0 = _mm_cmpeq_epi8(v0, nlv);
                    let nl1 = _mm_cmpeq_epi8(v1, nlv);
                    let cr1 = _mm_cmpeq_epi8(v1, crv);
                    let nl2 = _mm_cmpeq_epi8(v2, nlv);
                    let bl = _mm_and_si128(nl0, _mm_or_si128(nl1, _mm_and_si128(cr1, nl2)));
                    // Lanes are 0 or -1: subtracting counts them.
                    acc_nl = _mm_sub_epi8(acc_nl, nl0);
                    acc_bl = _mm_sub_epi8(acc_bl, bl);
                    i += 16;
                }
                newlines += sum_bytes(acc_nl);
                blank += sum_bytes(acc_bl);
            }
        }
        LineCounts { newlines, blank }
    }
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
    hash_open(std::fs::File::open(path)?, count_lines)
}

/// [`hash_file`] of a file already open (for inputs, opened by `fsx::open_regular`).
pub fn hash_open(
    mut file: std::fs::File,
    count_lines: bool,
) -> std::io::Result<(String, u64, Option<u64>)> {
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
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        std::io::Read::read_to_end(&mut file, &mut bytes)?;
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
        fn simd_matches_scalar(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'x')], 0..200), start in 0usize..40) {
            let start = start.min(data.len());
            let p1 = if start >= 1 { data[start - 1] } else { b'\n' };
            let p2 = if start >= 2 { data[start - 2] } else { b'\n' };
            prop_assert_eq!(count_lines(&data, start, data.len()), count_scalar(&data[start..], p1, p2));
            // And for every split point, the two halves add up.
            for mid in start..data.len() {
                let mut c = count_lines(&data, start, mid);
                c.add(count_lines(&data, mid, data.len()));
                prop_assert_eq!(c, count_scalar(&data[start..], p1, p2));
            }
        }

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

#[cfg(test)]
mod speed {
    #[test]
    #[ignore = "timing probe, run by hand with --release"]
    fn probe() {
        let line = b"Community-acquired pneumonia presents with fever, productive cough and pleuritic chest pain.\n";
        let data: Vec<u8> = line.iter().copied().cycle().take(512 << 20).collect();
        for _ in 0..2 {
            let t = std::time::Instant::now();
            let _ = super::hash_and_count(&data, false);
            let a = t.elapsed();
            let t = std::time::Instant::now();
            let _ = super::hash_and_count(&data, true);
            let b = t.elapsed();
            let t = std::time::Instant::now();
            let c = super::count_lines(&data, 0, data.len());
            let cc = t.elapsed();
            let t = std::time::Instant::now();
            let mut h = blake3::Hasher::new();
            h.update_rayon(&data);
            let d = t.elapsed();
            eprintln!(
                "hash only {a:?}, hash+count {b:?}, count only {cc:?} ({}), blake3 update_rayon {d:?}",
                c.newlines
            );
        }
    }
}
