//! Parameter initialisation as `torch.nn` does it by default.

use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A tensor of `dims` with values drawn uniformly from `[-bound, bound)`.
pub fn uniform(dims: &[usize], bound: f32, rng: &mut Rng) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let values = (0..n).map(|_| rng.range(-bound, bound)).collect();
    Tensor::from_vec(values, dims)
}

/// The bound of PyTorch's default initialisation of conv and linear layers,
/// `kaiming_uniform_(a = sqrt(5))` on the weight and `U(-b, b)` on the bias:
/// both come to `1 / sqrt(fan_in)` (0 when `fan_in` is 0).
pub fn default_bound(fan_in: usize) -> f32 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f32).sqrt()
    }
}
