//! Inference matrix products `y = x Wᵀ (+ b)` against a weight packed once, when the model is
//! loaded, into the layout the kernel streams.
//!
//! A weight `W` `[n, k]` (PyTorch's `[out, in]`) is cut into panels of [`NR`] output columns;
//! a panel holds its `k × NR` values row after row (`panel[p][j] = W[j0 + j, p]`, zero past
//! `n`), so the kernel reads every weight exactly once per block of rows, from one contiguous
//! stream. The `gemm` crate, given the same product, repacks `Wᵀ` from its strided layout on
//! every call, which halves its speed when the weights are not in cache (every layer of a
//! scoring pass): see docs/performance.md.
//!
//! The kernel keeps a tile of up to [`MR_V4`] rows × [`NR`] columns in registers and adds one
//! `k` at a time with fused multiply-adds, broadcasting each input from its row in place: the
//! inputs are not copied (an earlier version packed them into row tiles first, which cost a
//! quarter of the time of products with few panels, such as 256 or 576 outputs).
//!
//! # Determinism
//! Every output element is one chain of fused multiply-adds over `k` in increasing order,
//! starting from zero, then plus its bias. Blocking over rows, over `k` (a block resumes from the
//! stored partial sums) and over panels, the tile height, the thread count and the instruction
//! set change nothing in that chain: `f32::mul_add` and the AVX-512 FMA round the same way. So a
//! row's result depends on that row alone — not on how many rows share the product, which makes
//! batched scoring and token-by-token decoding agree bit for bit with one-row products.

use rayon::prelude::*;

use super::{Isa, isa};

/// Output columns per panel (two AVX-512 registers).
pub const NR: usize = 64;
/// Rows per register tile on AVX-512 (24 accumulators).
pub const MR_V4: usize = 6;
/// Rows per tile elsewhere.
const MR_OTHER: usize = 4;
/// `k` per block: a panel's block (32 KiB) stays in L1 while the row tiles go by.
const KC: usize = 128;
/// Rows per block: the block's inputs (`MC × KC`, 480 KiB) stay in L2 while the panels go by.
const MC: usize = 480;

/// A weight `[n, k]` in panels of [`NR`] columns (see the module documentation).
#[derive(Clone)]
pub struct PackedWt {
    n: usize,
    k: usize,
    data: Vec<f32>,
}

impl std::fmt::Debug for PackedWt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWt[{}, {}]", self.n, self.k)
    }
}

impl PackedWt {
    /// Packs `w`, row-major `[n, k]`.
    pub fn new(w: &[f32], n: usize, k: usize) -> PackedWt {
        assert_eq!(
            w.len(),
            n * k,
            "packed weight: {} values for [{n}, {k}]",
            w.len()
        );
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        data.par_chunks_mut((k * NR).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                let j0 = p * NR;
                for j in 0..NR.min(n - j0) {
                    let row = &w[(j0 + j) * k..(j0 + j + 1) * k];
                    for (i, &v) in row.iter().enumerate() {
                        panel[i * NR + j] = v;
                    }
                }
            });
        PackedWt { n, k, data }
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

/// The output pointer shared by the pieces of one product; each writes its own columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the pieces write disjoint column ranges of the output (see `matmul`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The element `i` places past the start (a method, so closures capture the whole `Out`).
    ///
    /// # Safety
    /// `i` must lie inside the output.
    unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(i) }
    }
}

/// `y = x Wᵀ + b` for `x` row-major `[m, k]`, `y` `[m, n]`, `bias` of `n` values if any. Runs on
/// the current rayon pool, in pieces of whole panels.
pub fn matmul(x: &[f32], m: usize, w: &PackedWt, bias: Option<&[f32]>, y: &mut [f32]) {
    assert_eq!(
        y.len(),
        m * w.n,
        "packed matmul: {} outputs for [{m}, {}]",
        y.len(),
        w.n
    );
    check(x, m, w, bias);
    if w.k == 0 {
        // No products: every output is its bias (or zero); the kernel would write nothing.
        for row in y.chunks_exact_mut(w.n.max(1)) {
            match bias {
                Some(b) => row.copy_from_slice(b),
                None => row.fill(0.0),
            }
        }
        return;
    }
    // SAFETY: `y` holds the m·n outputs (asserted) and is borrowed mutably for the call.
    unsafe { run(x, m, w, bias, y.as_mut_ptr()) }
}

/// [`matmul`] into a new vector, which is not zero-filled first: the kernel writes each of its
/// `m · n` elements before anything reads it.
pub fn matmul_new(x: &[f32], m: usize, w: &PackedWt, bias: Option<&[f32]>) -> Vec<f32> {
    check(x, m, w, bias);
    let len = m * w.n;
    if w.k == 0 {
        let mut y = vec![0f32; len];
        matmul(x, m, w, bias, &mut y);
        return y;
    }
    let mut y: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the capacity holds `len` floats; with k > 0 every output element of every unit is
    // stored by the first block of `k` (`Step::first`) before any later block loads it, so all
    // `len` elements are initialised when `run` returns, and only then is the length set.
    unsafe {
        run(x, m, w, bias, y.as_mut_ptr());
        y.set_len(len);
    }
    y
}

fn check(x: &[f32], m: usize, w: &PackedWt, bias: Option<&[f32]>) {
    let (n, k) = (w.n, w.k);
    assert_eq!(
        x.len(),
        m * k,
        "packed matmul: {} inputs for [{m}, {k}]",
        x.len()
    );
    if let Some(b) = bias {
        assert_eq!(
            b.len(),
            n,
            "packed matmul: {} biases for {n} outputs",
            b.len()
        );
    }
}

/// The product into `y` (see [`matmul`]), writing every element when `k > 0`.
///
/// # Safety
/// `y` must point at `m · n` writable floats that nothing else reads or writes during the call.
unsafe fn run(x: &[f32], m: usize, w: &PackedWt, bias: Option<&[f32]>, y: *mut f32) {
    let (n, k) = (w.n, w.k);
    if m == 0 || n == 0 {
        return;
    }
    let mr = tile_rows();
    let (chunk, per_piece) = split(m, w.panels(), mr, rayon::current_num_threads());
    let panels = w.panels();
    let pieces = panels.div_ceil(per_piece);
    let out = Out(y);
    // Chunk-major: the pieces of one chunk of rows run together, sharing its inputs in cache.
    (0..m.div_ceil(chunk) * pieces)
        .into_par_iter()
        .for_each(|unit| {
            let r0 = (unit / pieces) * chunk;
            let rows = chunk.min(m - r0);
            let xb = &x[r0 * k..(r0 + rows) * k];
            let first = (unit % pieces) * per_piece;
            for p in first..panels.min(first + per_piece) {
                let cols = NR.min(n - p * NR);
                // SAFETY: this unit covers columns p·NR..p·NR + cols of rows r0..r0 + rows,
                // inside `y` (m·n floats, the caller's contract), and no other unit writes those elements.
                let c = unsafe { out.at(r0 * n + p * NR) };
                let bias = bias.map(|b| &b[p * NR..p * NR + cols]);
                // SAFETY: as above.
                unsafe { panel_rows(xb, rows, k, mr, w.panel(p), c, n, cols, bias) };
            }
        });
}

/// How a product of `m` rows and `panels` panels is cut into units of work: chunks of rows (a
/// multiple of the tile height `mr`, at most [`MC`]) times pieces of `per_piece` panels, with
/// about eight units per thread, so that the threads finish together even when the panels do not
/// divide evenly among them (576 outputs are 9 panels: 18 units of half the rows). Returns
/// `(chunk rows, per_piece)`. The cut changes no result: every output element is computed the
/// same way in any unit.
fn split(m: usize, panels: usize, mr: usize, threads: usize) -> (usize, usize) {
    let want = 8 * threads.max(1);
    let per_piece = (panels / want).max(1);
    let pieces = panels.div_ceil(per_piece);
    let mut chunks = m.div_ceil(MC).max(1);
    if chunks * pieces < want {
        chunks = want.div_ceil(pieces).min(m.div_ceil(mr)).max(chunks);
    }
    let chunk = m.div_ceil(chunks).div_ceil(mr) * mr;
    (chunk.max(mr), per_piece)
}

/// Rows per register tile on this CPU.
fn tile_rows() -> usize {
    match isa() {
        Isa::V4 => MR_V4,
        _ => MR_OTHER,
    }
}

/// One panel times `rows` rows of `x` (row-major, `k` wide), in tiles of `mr` rows and blocks
/// of [`KC`].
///
/// # Safety
/// `c` must point at `rows` rows of `cols` writable floats, `ldc` apart.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_rows(
    x: &[f32],
    rows: usize,
    k: usize,
    mr: usize,
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: Option<&[f32]>,
) {
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let step = Step {
            b: &panel[k0 * NR..(k0 + kc) * NR],
            kc,
            first: k0 == 0,
            bias: if k0 + kc == k { bias } else { None },
            cols,
        };
        let mut r = 0;
        while r < rows {
            let h = mr.min(rows - r);
            let xt = &x[r * k + k0..];
            // SAFETY: rows r..r + h of `c` are inside the caller's rows.
            unsafe { tile(h, xt, k, &step, c.add(r * ldc), ldc) };
            r += h;
        }
        k0 += kc;
    }
}

/// What a tile adds: `kc` values of `k` from the panel block `b`.
struct Step<'a> {
    b: &'a [f32],
    kc: usize,
    /// Start from zero (the first block of `k`) instead of the stored partial sums.
    first: bool,
    /// Added after the last block.
    bias: Option<&'a [f32]>,
    cols: usize,
}

/// Dispatches a tile of `h` rows to the kernel for that height and this CPU.
///
/// # Safety
/// As [`panel_rows`], for `h` rows.
unsafe fn tile(h: usize, x: &[f32], ldx: usize, s: &Step<'_>, c: *mut f32, ldc: usize) {
    macro_rules! by_height {
        ($f:ident, $($n:literal)*) => {
            match h {
                $($n => $f::<$n>(x, ldx, s, c, ldc),)*
                _ => unreachable!("tile height {h}"),
            }
        };
    }
    // SAFETY: the caller's contract; `isa()` found the features the kernel needs.
    unsafe {
        match isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::V4 => by_height!(tile_v4, 1 2 3 4 5 6),
            #[cfg(target_arch = "x86_64")]
            Isa::V3 => by_height!(tile_v3, 1 2 3 4),
            _ => by_height!(tile_portable, 1 2 3 4),
        }
    }
}

/// The portable tile: `MR` rows of `f32::mul_add` chains.
///
/// # Safety
/// As [`panel_rows`], for `MR` rows.
#[inline(always)]
unsafe fn tile_portable<const MR: usize>(
    x: &[f32],
    ldx: usize,
    s: &Step<'_>,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[0f32; NR]; MR];
    if !s.first {
        for (r, a) in acc.iter_mut().enumerate() {
            for (j, v) in a.iter_mut().enumerate().take(s.cols) {
                // SAFETY: row r < MR, column j < cols of the caller's output.
                *v = unsafe { *c.add(r * ldc + j) };
            }
        }
    }
    for p in 0..s.kc {
        let b = &s.b[p * NR..(p + 1) * NR];
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = x[r * ldx + p];
            for (v, &bv) in a.iter_mut().zip(b) {
                *v = xv.mul_add(bv, *v);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (j, &v) in a.iter().enumerate().take(s.cols) {
            let v = match s.bias {
                Some(b) => v + b[j],
                None => v,
            };
            // SAFETY: as above.
            unsafe { *c.add(r * ldc + j) = v };
        }
    }
}

/// [`tile_portable`] compiled for AVX2 + FMA (the compiler vectorises the 32 columns).
///
/// # Safety
/// As [`panel_rows`]; the CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_v3<const MR: usize>(x: &[f32], ldx: usize, s: &Step<'_>, c: *mut f32, ldc: usize) {
    // SAFETY: the caller's contract.
    unsafe { tile_portable::<MR>(x, ldx, s, c, ldc) }
}

/// Registers per tile row on AVX-512.
const NV: usize = NR / 16;

/// The AVX-512 tile: `MR` rows × [`NR`] columns in `NV·MR` registers.
///
/// # Safety
/// As [`panel_rows`]; the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_v4<const MR: usize>(x: &[f32], ldx: usize, s: &Step<'_>, c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    assert!(s.b.len() >= s.kc * NR && (MR - 1) * ldx + s.kc <= x.len());
    let mut mask = [0 as __mmask16; NV];
    for (v, m) in mask.iter_mut().enumerate() {
        let left = s.cols.saturating_sub(v * 16);
        *m = if left >= 16 {
            0xffff
        } else {
            ((1u32 << left) - 1) as u16
        };
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    // SAFETY (all blocks below): rows < MR and columns < cols of `c` belong to the caller's
    // output (masked loads and stores touch only those); x reads stay inside the asserted
    // bound; panel reads stay inside `kc · NR`.
    unsafe {
        if !s.first {
            for (r, a) in acc.iter_mut().enumerate() {
                for v in 0..NV {
                    a[v] = _mm512_maskz_loadu_ps(mask[v], c.add(r * ldc + 16 * v));
                }
            }
        }
        let pb = s.b.as_ptr();
        let mut px = [x.as_ptr(); MR];
        for (r, row) in px.iter_mut().enumerate() {
            *row = row.add(r * ldx);
        }
        for p in 0..s.kc {
            let mut b = [_mm512_setzero_ps(); NV];
            for (v, bv) in b.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(pb.add(p * NR + 16 * v));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*px[r].add(p));
                for v in 0..NV {
                    a[v] = _mm512_fmadd_ps(xv, b[v], a[v]);
                }
            }
        }
        if let Some(bias) = s.bias {
            for v in 0..NV {
                let bv =
                    _mm512_maskz_loadu_ps(mask[v], bias.as_ptr().add((16 * v).min(bias.len())));
                for a in acc.iter_mut() {
                    a[v] = _mm512_add_ps(a[v], bv);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for v in 0..NV {
                _mm512_mask_storeu_ps(c.add(r * ldc + 16 * v), mask[v], a[v]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
    }

    /// The definition: one `mul_add` chain over k per element, then the bias.
    fn reference(
        x: &[f32],
        m: usize,
        w: &[f32],
        n: usize,
        k: usize,
        b: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f32;
                for p in 0..k {
                    s = x[i * k + p].mul_add(w[j * k + p], s);
                }
                y[i * n + j] = b.map_or(s, |b| s + b[j]);
            }
        }
        y
    }

    fn run(x: &[f32], m: usize, w: &PackedWt, b: Option<&[f32]>, threads: usize) -> Vec<f32> {
        crate::model::fused::in_pool(threads, || {
            let mut y = vec![f32::NAN; m * w.n()];
            matmul(x, m, w, b, &mut y);
            y
        })
    }

    #[test]
    fn every_element_is_its_own_fma_chain_whatever_the_blocking_and_threads() {
        // Shapes crossing every boundary: tiles of 12 (and 4), panels of 32, k blocks of 256,
        // row blocks of 480.
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 33, 7),
            (13, 64, 300),
            (31, 70, 513),
            (485, 40, 260),
        ] {
            let x = data(m * k, 1.0);
            let w = data(n * k, 2.0);
            let b = data(n, 3.0);
            let packed = PackedWt::new(&w, n, k);
            for bias in [None, Some(b.as_slice())] {
                let want = reference(&x, m, &w, n, k, bias);
                for threads in [1, 2, 3] {
                    assert_eq!(
                        run(&x, m, &packed, bias, threads),
                        want,
                        "[{m},{k}]x[{n},{k}]ᵀ"
                    );
                }
            }
        }
    }

    #[test]
    fn units_cover_the_product_in_balanced_pieces() {
        for &(m, panels, mr, threads) in &[
            (1, 768, 6, 2),
            (448, 9, 6, 2),
            (448, 48, 6, 2),
            (1024, 4, 6, 2),
            (7, 9, 4, 3),
            (5000, 1, 6, 1),
        ] {
            let (chunk, per_piece) = split(m, panels, mr, threads);
            assert!(chunk.is_multiple_of(mr) && chunk <= MC.max(mr), "{chunk}");
            let units = m.div_ceil(chunk) * panels.div_ceil(per_piece);
            // Enough units for every thread unless the product is too small to cut further.
            assert!(
                units >= 8 * threads || (chunk == mr && per_piece == 1),
                "[{m} rows, {panels} panels]: {units} units"
            );
        }
        // 576 outputs (9 panels) of 448 rows on two threads: cut by rows as well.
        assert_eq!(split(448, 9, 6, 2), (228, 1));
        // The head at decoding (one row, 768 panels): pieces of 48 panels.
        assert_eq!(split(1, 768, 6, 2), (6, 48));
    }

    #[test]
    fn a_new_output_vector_gets_the_bits_of_a_zeroed_one() {
        for &(m, n, k) in &[(1, 1, 1), (7, 70, 130), (13, 64, 300), (3, 5, 0), (0, 4, 3)] {
            let x = data(m * k, 11.0);
            let w = PackedWt::new(&data(n * k, 12.0), n, k);
            let b = data(n, 13.0);
            for bias in [None, Some(b.as_slice())] {
                let mut y = vec![f32::NAN; m * n];
                matmul(&x, m, &w, bias, &mut y);
                assert_eq!(matmul_new(&x, m, &w, bias), y, "[{m},{k}]x[{n},{k}]ᵀ");
                assert_eq!(y, reference(&x, m, &data(n * k, 12.0), n, k, bias));
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_any_batch() {
        let (n, k) = (96, 300);
        let w = PackedWt::new(&data(n * k, 5.0), n, k);
        let x = data(29 * k, 6.0);
        let all = run(&x, 29, &w, None, 2);
        for i in [0, 11, 12, 28] {
            let one = run(&x[i * k..(i + 1) * k], 1, &w, None, 2);
            assert_eq!(one, all[i * n..(i + 1) * n]);
        }
    }

    #[test]
    fn the_portable_tile_gives_the_simd_bits() {
        let (m, n, k) = (14, 75, 270);
        let x = data(m * k, 7.0);
        let w = data(n * k, 8.0);
        let b = data(n, 9.0);
        let packed = PackedWt::new(&w, n, k);
        let simd = run(&x, m, &packed, Some(&b), 1);
        // The portable tiles, driven as `panel_rows` drives them.
        let mut y = vec![0f32; m * n];
        for p in 0..packed.panels() {
            let cols = NR.min(n - p * NR);
            let mut k0 = 0;
            while k0 < k {
                let kc = KC.min(k - k0);
                let s = Step {
                    b: &packed.panel(p)[k0 * NR..(k0 + kc) * NR],
                    kc,
                    first: k0 == 0,
                    bias: (k0 + kc == k).then(|| &b[p * NR..p * NR + cols]),
                    cols,
                };
                for r in (0..m).step_by(MR_OTHER) {
                    let xt = &x[r * k + k0..];
                    let c = y[r * n + p * NR..].as_mut_ptr();
                    // SAFETY: rows r..r + h and columns p·NR..p·NR + cols of y.
                    unsafe {
                        match m - r {
                            1 => tile_portable::<1>(xt, k, &s, c, n),
                            2 => tile_portable::<2>(xt, k, &s, c, n),
                            3 => tile_portable::<3>(xt, k, &s, c, n),
                            _ => tile_portable::<4>(xt, k, &s, c, n),
                        }
                    }
                }
                k0 += kc;
            }
        }
        assert_eq!(simd, y);
    }
}
