//! Resume files: tensors (models, optimiser buffers) and one JSON record of
//! where the run stands, in a single safetensors file written atomically, so
//! that what is resumed from is always one consistent moment of a run.

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// `optimizer`'s buffers as tensors named `{prefix}{buffer}`, and its step count.
pub(crate) fn optimizer_tensors(
    prefix: &str,
    optimizer: &Optimizer,
) -> Result<(u64, Vec<(String, Tensor)>)> {
    let state = optimizer.state();
    let mut out = Vec::with_capacity(state.buffers.len());
    for (name, values) in state.buffers {
        let n = values.len();
        out.push((format!("{prefix}{name}"), Tensor::from_vec(values, &[n])?));
    }
    Ok((state.step, out))
}

/// Writes `tensors` and `record` (as JSON under `key`) to `path`, atomically.
pub(crate) fn write_state<R: Serialize>(
    path: &Path,
    tensors: &[(String, Tensor)],
    key: &str,
    record: &R,
) -> Result<()> {
    let text = serde_json::to_string(record)
        .map_err(|e| Error::invalid("resume", format!("cannot record the run's progress: {e}")))?;
    let meta = HashMap::from([(key.to_string(), text)]);
    checkpoint::save_weights_with_metadata(path, tensors, Some(meta))
}

/// Reads a file written by [`write_state`]: the record under `key` and the
/// tensors. A file without the record is not a resume file of retort.
pub(crate) fn read_state<R: DeserializeOwned>(
    path: &Path,
    key: &str,
) -> Result<(R, Vec<(String, Tensor)>)> {
    let meta = checkpoint::load_metadata(path)?.unwrap_or_default();
    let text = meta.get(key).ok_or_else(|| {
        Error::data(
            path,
            None,
            "not a resume file of retort (no progress record)",
        )
    })?;
    let record: R = serde_json::from_str(text)
        .map_err(|e| Error::data(path, None, format!("unreadable progress record: {e}")))?;
    Ok((record, checkpoint::load_weights(path)?))
}
