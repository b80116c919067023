//! Linear layers over frozen weights: `y = x Wᵀ` whose backward pass computes only the input
//! gradient `dL/dx = dL/dy · W`.
//!
//! candle's matmul backward computes the gradient of both operands, even when the weight is a
//! plain tensor that no optimizer will ever read. With LoRA or a frozen DPO reference that is
//! about a third of all matmul work spent on results that are thrown away. This custom op runs the
//! same gemm as candle in the forward pass (so outputs are bit-identical to `x.matmul(&w.t())`)
//! and returns only the input gradient.
//!
//! CPU only: on other devices [`frozen_linear`] falls back to candle's own matmul, which is
//! correct but computes the unused weight gradient.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

struct FrozenMatmul {
    /// [out, in], contiguous.
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = xl.dims();
        let k = *dims.last().ok_or_else(|| {
            candle_core::Error::Msg("frozen-matmul: input has no dimensions".into())
        })?;
        if !xl.is_contiguous() {
            candle_core::bail!("frozen-matmul: input must be contiguous");
        }
        let (ws, wl) = self.w.storage_and_layout();
        let Storage::Cpu(w) = &*ws else {
            candle_core::bail!("frozen-matmul: weight is not on the CPU");
        };
        let (n, wk) = wl.shape().dims2()?;
        if wk != k {
            candle_core::bail!("frozen-matmul: input has {k} features, weight expects {wk}");
        }
        let m = xl.shape().elem_count() / k.max(1);
        let lhs = Layout::contiguous_with_offset((m, k), xl.start_offset());
        let rhs = wl.transpose(0, 1)?;
        let out = x.matmul(w, (1, m, n, k), &lhs, &rhs)?;
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        Ok((out, Shape::from(shape)))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_matmul(&self.w)?))
    }
}

/// `x Wᵀ` for a weight that receives no gradient. `x` is `[..., in]`, `w` is `[out, in]`.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() || !x.track_op() {
        // Nothing to save without a graph through `x`, and no CPU kernel elsewhere.
        return x.broadcast_matmul(&w.t()?);
    }
    let w = w.contiguous()?;
    x.contiguous()?.apply_op1(FrozenMatmul { w })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn forward_and_input_gradient_match_plain_matmul_bit_for_bit() {
        let dev = Device::Cpu;
        let x =
            Var::from_tensor(&Tensor::from_vec(values(2 * 5 * 16, 7), (2, 5, 16), &dev).unwrap())
                .unwrap();
        let w = Tensor::from_vec(values(24 * 16, 9), (24, 16), &dev).unwrap();
        let ours = frozen_linear(x.as_tensor(), &w).unwrap();
        let plain = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
        assert_eq!(ours.dims(), &[2, 5, 24]);
        let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = plain.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        let up = Tensor::from_vec(values(2 * 5 * 24, 3), (2, 5, 24), &dev).unwrap();
        let ga = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (plain * &up)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let ga = ga.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        let gb = gb.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        assert_eq!(ga.to_vec1::<f32>().unwrap(), gb.to_vec1::<f32>().unwrap());
    }

    #[test]
    fn no_weight_gradient_is_produced() {
        let dev = Device::Cpu;
        let x =
            Var::from_tensor(&Tensor::from_vec(values(3 * 8, 1), (3, 8), &dev).unwrap()).unwrap();
        let w = Tensor::from_vec(values(4 * 8, 2), (4, 8), &dev).unwrap();
        let g = frozen_linear(x.as_tensor(), &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&w).is_none());
        assert!(g.get(x.as_tensor()).is_some());
    }
}
