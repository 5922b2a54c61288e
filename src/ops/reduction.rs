//! How a loss over a batch becomes one number.

/// Reduction of per-sample losses, as PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// One loss per sample.
    None,
    /// The sum over samples.
    Sum,
    /// The mean over samples (each loss's own normalisation first, where the loss defines one).
    #[default]
    Mean,
}
