//! The CPU custom ops of the inference forward: products on packed weights, SwiGLU, and the
//! causal attention of whole sequences, each a row-wise kernel behind candle's `CustomOp1`.

use super::packed::{self, PackedWt};
use super::{attn_kernel, rope, swiglu};

/// `x Wᵀ` on the packed CPU kernel, for any number of rows (each row's result is the same
/// whatever the others are: see the kernel's documentation).
pub(super) struct PackedTimes<'a> {
    pub(super) w: &'a PackedWt,
}

/// A row-wise CPU op's plumbing: checks that `x` is a contiguous f32 tensor whose last dimension
/// is `inp`, has `f` make `out` values per row from its values and row count, and gives the
/// result the shape of `x` with `out` last.
fn per_row(
    name: &str,
    x: &candle_core::CpuStorage,
    l: &candle_core::Layout,
    (inp, out): (usize, usize),
    f: impl FnOnce(&[f32], usize) -> Vec<f32>,
) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
    let candle_core::CpuStorage::F32(x) = x else {
        candle_core::bail!("{name}: f32 inputs only");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{name}: the input must be contiguous");
    };
    if l.dims().last() != Some(&inp) {
        candle_core::bail!("{name}: input {:?}, expected {inp} features", l.dims());
    }
    let rows = (b - a) / inp.max(1);
    let y = f(&x[a..b], rows);
    if y.len() != rows * out {
        candle_core::bail!("{name}: {} outputs for {rows} rows of {out}", y.len());
    }
    let mut shape = l.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    Ok((
        candle_core::CpuStorage::F32(y),
        candle_core::Shape::from(shape),
    ))
}

/// Implements [`candle_core::CustomOp1`] for a CPU-only op: `$name`, and `cpu_fwd` as `$body`
/// with `$op` bound to the op, `$x` to the input storage and `$l` to its layout.
macro_rules! cpu_op {
    ($ty:ty, $name:literal, |$op:ident, $x:ident, $l:ident| $body:block) => {
        impl candle_core::CustomOp1 for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                $x: &candle_core::CpuStorage,
                $l: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                let $op = self;
                $body
            }
        }
    };
}

cpu_op!(PackedTimes<'_>, "packed-times-weight-t", |op, x, l| {
    let w = op.w;
    per_row(
        candle_core::CustomOp1::name(op),
        x,
        l,
        (w.k(), w.n()),
        |x, rows| packed::matmul_new(x, rows, w, None),
    )
});

/// `silu(g) · u` of rows `[g | u]` (`[.., 2 · inter]` → `[.., inter]`) on the CPU kernel.
pub(super) struct SwiGlu {
    pub(super) inter: usize,
}

cpu_op!(SwiGlu, "swiglu", |op, gu, l| {
    let i = op.inter;
    per_row(
        candle_core::CustomOp1::name(op),
        gu,
        l,
        (2 * i, i),
        |gu, rows| {
            let mut h = vec![0f32; rows * i];
            swiglu::forward(gu, &mut h, i);
            h
        },
    )
});

/// Causal self-attention of whole sequences on the CPU, from the fused q/k/v rows
/// `[b, t, (heads + 2 · kv_heads) · head_dim]` (RoPE not yet applied) to
/// `[b, t, heads · head_dim]`: RoPE and
/// attention with the training kernels ([`crate::model::kernels::rope`],
/// [`crate::model::kernels::attention`]), each sequence on its own, so a sequence's result does
/// not depend on the others in the batch.
pub(super) struct CausalAttention<'a> {
    pub(super) shape: attn_kernel::Shape,
    pub(super) rope: Option<&'a rope::Tables>,
    pub(super) alibi: Option<&'a [f32]>,
}

cpu_op!(CausalAttention<'_>, "causal-attention", |op, qkv, l| {
    let sh = op.shape;
    let width = (sh.heads + 2 * sh.kv_heads) * sh.head_dim;
    let out_width = sh.heads * sh.head_dim;
    if l.dims() != [sh.rows, sh.seq, width] {
        candle_core::bail!(
            "causal attention: input {:?}, expected [{}, {}, {width}]",
            l.dims(),
            sh.rows,
            sh.seq
        );
    }
    let rope = op.rope;
    let alibi = op.alibi;
    let mut lse = vec![0f32; sh.rows * sh.heads * sh.seq];
    per_row(
        candle_core::CustomOp1::name(op),
        qkv,
        l,
        (width, out_width),
        |x, rows| {
            let mut q = x.to_vec();
            if let Some(t) = rope {
                rope::apply(&mut q, width, sh.seq, sh.heads + sh.kv_heads, t, false);
            }
            let mut out = vec![0f32; rows * out_width];
            attn_kernel::forward(sh, &q, alibi, &mut out, &mut lse);
            out
        },
    )
});
