//! Matrix products over strided views of `f32` slices, through the `gemm` crate (candle's own
//! CPU matmul). Views carry a row and a column stride, so transposes, column ranges of a fused
//! q/k/v output and per-head slices are all read in place, without copies.

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A writable matrix view.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

impl<'a> Mat<'a> {
    /// A row-major `[rows, cols]` matrix at the start of `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat::strided(data, rows, cols, cols)
    }

    /// Rows of `cols` elements starting `row_stride` apart (a column range of a wider
    /// row-major matrix when `data` starts at the range's first column).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Mat<'a> {
        let m = Mat {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: 1,
        };
        assert!(
            span(rows, cols, m.rs, m.cs) <= data.len(),
            "matrix view [{rows}, {cols}] with row stride {row_stride} exceeds its {} elements",
            data.len()
        );
        m
    }

    /// The transpose (no copy).
    pub fn t(self) -> Mat<'a> {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> MatMut<'a> {
        MatMut::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> MatMut<'a> {
        assert!(
            span(rows, cols, row_stride, 1) <= data.len(),
            "matrix view [{rows}, {cols}] with row stride {row_stride} exceeds its {} elements",
            data.len()
        );
        MatMut {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> MatMut<'a> {
        MatMut {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// Whether a product may use the rayon pool. Products that already run inside a parallel loop
/// (attention heads) use one thread each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Par {
    Pool,
    Single,
}

/// `dst = beta · a · b`, or `dst += beta · a · b` when `accumulate`.
pub fn matmul(dst: MatMut<'_>, a: Mat<'_>, b: Mat<'_>, beta: f32, accumulate: bool, par: Par) {
    let raw = RawMut {
        ptr: dst.data.as_mut_ptr(),
        rows: dst.rows,
        cols: dst.cols,
        rs: dst.rs,
        cs: dst.cs,
    };
    // SAFETY: the view's constructor checked that every element it addresses lies inside
    // `dst.data`, which is borrowed mutably for the call, so nothing else reads or writes it and
    // it overlaps neither `a` nor `b`.
    unsafe { matmul_raw(raw, a, b, beta, accumulate, par) }
}

/// A writable matrix view by raw pointer, for kernels whose parallel tasks write disjoint,
/// interleaved elements of one buffer (per-head column ranges of the same rows), where no
/// `&mut` sub-slice can be split off for each.
#[derive(Debug, Clone, Copy)]
pub struct RawMut {
    pub ptr: *mut f32,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

/// A buffer that parallel tasks write through [`RawMut`] views.
#[derive(Debug, Clone, Copy)]
pub struct Shared {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Shared` is only a base pointer and a length; the tasks that use it write disjoint
// elements (each kernel documents its partition), and the buffer is borrowed mutably by the
// kernel for as long as the tasks run.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    pub fn new(buf: &mut [f32]) -> Shared {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// Rows of `cols` elements from `offset`, `row_stride` apart; panics outside the buffer.
    pub fn view(&self, offset: usize, rows: usize, cols: usize, row_stride: usize) -> RawMut {
        assert!(
            offset + span(rows, cols, row_stride, 1) <= self.len,
            "raw view at {offset} [{rows}, {cols}] (row stride {row_stride}) exceeds {} elements",
            self.len
        );
        RawMut {
            // SAFETY: `offset` is within the buffer (checked above).
            ptr: unsafe { self.ptr.add(offset) },
            rows,
            cols,
            rs: row_stride,
            cs: 1,
        }
    }
}

/// [`matmul`] into a raw view.
///
/// # Safety
/// `dst` must address only elements of one live buffer, and no other thread may read or write
/// those elements during the call.
pub unsafe fn matmul_raw(
    dst: RawMut,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    accumulate: bool,
    par: Par,
) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    assert!(
        a.rows == m && b.rows == k && b.cols == n,
        "matmul shapes: [{m}, {n}] = [{}, {}] x [{}, {}]",
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: (i, j) is inside the view (caller's contract).
                    unsafe { *dst.ptr.add(i * dst.rs + j * dst.cs) = 0.0 };
                }
            }
        }
        return;
    }
    let parallelism = match par {
        Par::Pool if rayon::current_num_threads() > 1 => gemm::Parallelism::Rayon(0),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: `a` and `b` were bounds-checked when built; `dst` is the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn strided_views_transposes_and_accumulation() {
        let (m, k, n) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32) - 3.0).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![0f32; m * n];
        matmul(
            MatMut::new(&mut c, m, n),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            1.0,
            false,
            Par::Pool,
        );
        assert_eq!(c, want);
        // c += 2 · a · b, with b given as its transpose.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        matmul(
            MatMut::new(&mut c, m, n),
            Mat::new(&a, m, k),
            Mat::new(&bt, n, k).t(),
            2.0,
            true,
            Par::Single,
        );
        assert_eq!(c, want.iter().map(|x| 3.0 * x).collect::<Vec<_>>());
        // A column range of a wider output: columns 2..6 of a [m, 7] matrix.
        let mut wide = vec![9f32; m * 7];
        matmul(
            MatMut::strided(&mut wide[2..], m, n, 7),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            1.0,
            false,
            Par::Pool,
        );
        for i in 0..m {
            assert_eq!(&wide[i * 7 + 2..i * 7 + 6], &want[i * n..i * n + n]);
            assert_eq!(wide[i * 7], 9.0);
            assert_eq!(wide[i * 7 + 6], 9.0);
        }
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn a_view_past_its_slice_is_refused() {
        let v = vec![0f32; 10];
        let _ = Mat::strided(&v, 3, 4, 4);
    }
}
