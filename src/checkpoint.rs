//! Checkpoints: a folder holding `config.json` (`{"model": CrnnConfig,
//! "charset": [symbols…]}`) and `model.safetensors` (f32 tensors under the
//! PyTorch names of `reference-models.md`), so that a model moves between
//! retort and PyTorch both ways.
//!
//! Files are written atomically (a temporary file in the same folder,
//! flushed and synced, then renamed over the target), so a crash never leaves
//! a half-written checkpoint under the final name. Every error names the
//! file and the problem.

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::nn::{Crnn, CrnnConfig};
use crate::rng::Rng;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

/// The name of the configuration file in a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
/// The name of the weights file in a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The charset of the presets and benchmarks: digits then lower-case letters.
pub const DEFAULT_CHARSET: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

/// A loaded checkpoint: the model and the charset its classes stand for
/// (class `i + 1` is `charset[i]`; class 0 is the CTC blank).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The model, with its weights and running statistics loaded.
    pub model: Crnn,
    /// The symbols of classes 1..K.
    pub charset: Vec<String>,
}

/// The content of `config.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    model: CrnnConfig,
    charset: Vec<String>,
}

/// The default charset ([`DEFAULT_CHARSET`]) as one string per symbol.
pub fn default_charset() -> Vec<String> {
    DEFAULT_CHARSET.chars().map(String::from).collect()
}

/// Checks that `charset` fits a model of `num_classes` classes: one symbol
/// per class after the blank, none empty, none repeated.
fn check_charset(charset: &[String], num_classes: usize) -> std::result::Result<(), String> {
    if charset.len() + 1 != num_classes {
        return Err(format!(
            "the charset has {} symbols but the model has {num_classes} classes \
             (the blank and one class per symbol: {} symbols expected)",
            charset.len(),
            num_classes.saturating_sub(1)
        ));
    }
    let mut seen = HashSet::new();
    for (i, s) in charset.iter().enumerate() {
        if s.is_empty() {
            return Err(format!("charset symbol {i} is empty"));
        }
        if !seen.insert(s.as_str()) {
            return Err(format!("charset symbol {s:?} appears more than once"));
        }
    }
    Ok(())
}

/// Saves `model` and `charset` as a checkpoint folder `dir` (created if
/// needed): `config.json` and `model.safetensors`, each written atomically.
/// The charset must have one symbol per non-blank class.
pub fn save(dir: &Path, model: &Crnn, charset: &[String]) -> Result<()> {
    if let Err(message) = check_charset(charset, model.config.num_classes) {
        return Err(Error::data(dir.join(CONFIG_FILE), None, message));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_weights(&dir.join(WEIGHTS_FILE), &model.state_dict())?;
    let config = ConfigFile {
        model: model.config.clone(),
        charset: charset.to_vec(),
    };
    let config_path = dir.join(CONFIG_FILE);
    let mut json = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::data(&config_path, None, format!("cannot encode: {e}")))?;
    json.push('\n');
    write_atomic(&config_path, json.as_bytes())
}

/// Loads the checkpoint folder `dir`. Errors name the file concerned: a
/// missing folder or file, JSON that does not parse or has an unknown key, an
/// invalid model config, a charset that does not fit the classes, a weights
/// file that is not valid safetensors (e.g. truncated), a dtype other than
/// F32, and tensors that do not match the config (missing, extra, wrong shape).
pub fn load(dir: &Path) -> Result<Checkpoint> {
    check_dir(dir)?;
    let (config, charset) = read_config(&dir.join(CONFIG_FILE))?;
    let weights = dir.join(WEIGHTS_FILE);
    let model = model_from_weights(config, &weights, &dir.join(CONFIG_FILE))?;
    Ok(Checkpoint { model, charset })
}

/// Loads a model for `spec`, which is either a checkpoint folder or a preset
/// name (`crnn-t`, `crnn-s`), as the CLI's `--model SPEC [--weights FILE]`.
///
/// - A folder: its `config.json` and charset; the weights come from
///   `weights` if given, else from the folder's `model.safetensors`. With
///   `charset_len`, the folder's charset must have that many symbols.
/// - A preset: the preset's config with `charset_len + 1` classes when
///   `charset_len` is given, else as many classes as the weights file's
///   `head.bias` has, else 37. The weights come from `weights`; without
///   them the model is freshly initialised (PyTorch's default, seed 0).
///   The charset is the default 36 alphanumeric symbols when the model has
///   37 classes. Otherwise it is empty when `charset_len` was given (the
///   caller supplies its own charset), and an error without it (weights of
///   another class count and no charset to read them with).
///
/// A name that is neither an existing folder nor a preset is an error that
/// lists the presets.
pub fn load_model(
    spec: &str,
    weights: Option<&Path>,
    charset_len: Option<usize>,
) -> Result<Checkpoint> {
    let path = Path::new(spec);
    if path.is_dir() {
        let config_path = path.join(CONFIG_FILE);
        let (config, charset) = read_config(&config_path)?;
        if let Some(n) = charset_len {
            if n != charset.len() {
                return Err(Error::data(
                    &config_path,
                    None,
                    format!(
                        "the checkpoint's charset has {} symbols, {n} were expected",
                        charset.len()
                    ),
                ));
            }
        }
        let weights_path = weights
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.join(WEIGHTS_FILE));
        let model = model_from_weights(config, &weights_path, &config_path)?;
        return Ok(Checkpoint { model, charset });
    }
    let mut config = CrnnConfig::preset(spec).map_err(|_| {
        Error::invalid(
            "load_model",
            format!(
                "`{spec}` is neither a checkpoint folder nor a model preset (presets: {})",
                CrnnConfig::preset_names().join(", ")
            ),
        )
    })?;
    let tensors = match weights {
        Some(w) => Some(load_weights(w)?),
        None => None,
    };
    let classes = match (charset_len, &tensors) {
        (Some(n), _) => Some(n + 1),
        (None, Some(t)) => t
            .iter()
            .find(|(name, _)| name == "head.bias")
            .map(|(_, t)| t.numel()),
        (None, None) => None,
    };
    if let Some(k) = classes {
        config = config.with_classes(k);
    }
    config.validate()?;
    let default = default_charset();
    let charset = if config.num_classes == default.len() + 1 {
        default
    } else if charset_len.is_some() {
        Vec::new()
    } else {
        let source = weights.map_or_else(|| spec.to_string(), |w| w.display().to_string());
        return Err(Error::data(
            source,
            None,
            format!(
                "the model has {} classes, so the default charset of {} symbols does not fit; \
                 give the charset it was trained with",
                config.num_classes,
                default.len()
            ),
        ));
    };
    let mut model = Crnn::new(config, &mut Rng::seed(0))?;
    if let (Some(tensors), Some(w)) = (tensors, weights) {
        model
            .load_state_dict(&tensors)
            .map_err(|e| mismatch(w, &format!("preset `{spec}`"), e))?;
    }
    Ok(Checkpoint { model, charset })
}

/// Reads the f32 tensors of a `.safetensors` file, in the file's order
/// (PyTorch's `*.num_batches_tracked` counters are skipped).
/// Errors name the file: missing or unreadable, not valid safetensors (e.g.
/// truncated), a dtype other than F32 (F64, F16, BF16, … are named), or
/// more than four dimensions.
pub fn load_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = read_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        Error::data(
            path,
            None,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let mut views = st.tensors();
    // The file's data order, so that loading is deterministic.
    views.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    let mut out = Vec::with_capacity(views.len());
    for (name, view) in views {
        // PyTorch's BatchNorm keeps an int64 step counter that the model
        // does not use; a state_dict saved with it still loads.
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(Error::data(
                path,
                None,
                format!(
                    "tensor {name} has dtype {:?}; only F32 is supported \
                     (convert with tensor.float() before saving)",
                    view.dtype()
                ),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let tensor = Tensor::from_vec(values, view.shape())
            .map_err(|e| Error::data(path, None, format!("tensor {name} cannot be held: {e}")))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Writes `tensors` as an f32 `.safetensors` file at `path`, atomically.
/// Repeated names are an error.
pub fn save_weights(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    save_weights_with_metadata(path, tensors, None)
}

/// Reads the string metadata of a `.safetensors` file's header (`None` when it has none).
pub fn load_metadata(path: &Path) -> Result<Option<std::collections::HashMap<String, String>>> {
    let bytes = read_file(path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| {
        Error::data(
            path,
            None,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    Ok(meta.metadata().clone())
}

/// [`save_weights`] with string metadata stored in the file's header.
pub fn save_weights_with_metadata(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let mut seen = HashSet::new();
    for (name, _) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(Error::data(
                path,
                None,
                format!("tensor {name} is given more than once"),
            ));
        }
    }
    let views = tensors.iter().map(|(name, t)| (name.as_str(), F32View(t)));
    let bytes = safetensors::serialize(views, metadata)
        .map_err(|e| Error::data(path, None, format!("cannot encode safetensors: {e}")))?;
    write_atomic(path, &bytes)
}

/// A tensor seen as safetensors F32 data.
struct F32View<'a>(&'a Tensor);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        self.0.dims()
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data().iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.0.numel() * 4
    }
}

/// Checks that `dir` is an existing folder.
fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::data(
            dir,
            None,
            "is not a checkpoint folder (a folder holding config.json and model.safetensors)",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::data(dir, None, "checkpoint folder not found"))
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Reads a whole file; a missing file is a data error saying so.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::data(path, None, "file not found")
        } else {
            Error::io(path, e)
        }
    })
}

/// Reads and checks a `config.json`: the model config and its charset.
fn read_config(path: &Path) -> Result<(CrnnConfig, Vec<String>)> {
    let bytes = read_file(path)?;
    let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| {
        let line = (e.line() > 0).then_some(e.line());
        Error::data(path, line, format!("invalid checkpoint config: {e}"))
    })?;
    file.model
        .validate()
        .map_err(|e| Error::data(path, None, format!("invalid model config: {e}")))?;
    check_charset(&file.charset, file.model.num_classes).map_err(|m| Error::data(path, None, m))?;
    Ok((file.model, file.charset))
}

/// At least how many f32 values a model of `config` holds in its state dict
/// ([`Crnn::state_dict`]): its conv blocks with their BatchNorm statistics,
/// LSTM and head, computed from the sizes alone without building anything
/// (optional parts such as early exits only add to it); `None` when the
/// count does not fit a `usize`.
pub fn min_state_dict_values(config: &CrnnConfig) -> Option<usize> {
    let mut total = 0usize;
    let mut channels = config.in_channels;
    for b in &config.blocks {
        // conv 3x3 without bias, then BatchNorm weight, bias, mean and var.
        let conv = b.out_channels.checked_mul(channels)?.checked_mul(9)?;
        let bn = b.out_channels.checked_mul(4)?;
        total = total.checked_add(conv)?.checked_add(bn)?;
        channels = b.out_channels;
    }
    let dirs = if config.bidirectional { 2 } else { 1 };
    let h = config.hidden;
    let gates = h.checked_mul(4)?;
    let mut features = config
        .blocks
        .last()?
        .out_channels
        .checked_mul(config.feature_height())?;
    for _ in 0..config.layers {
        // weight_ih (4H, F), weight_hh (4H, H), bias_ih and bias_hh (4H).
        let one = gates
            .checked_mul(features)?
            .checked_add(gates.checked_mul(h)?)?
            .checked_add(gates.checked_mul(2)?)?;
        total = total.checked_add(one.checked_mul(dirs)?)?;
        features = h.checked_mul(dirs)?;
    }
    // head: weight (K, dirs * H) and bias (K).
    let head = config
        .num_classes
        .checked_mul(h.checked_mul(dirs)?)?
        .checked_add(config.num_classes)?;
    total.checked_add(head)
}

/// Refuses, before the model is built, a config whose model needs more
/// values than the weights file holds when that model would be large: a
/// valid `config.json` with huge layer sizes (out_channels 2^40, hidden
/// 10^9) must not make loading allocate terabytes. Small models are left to
/// [`Crnn::load_state_dict`], whose error names the tensors that differ.
fn check_size(
    config: &CrnnConfig,
    tensors: &[(String, Tensor)],
    weights: &Path,
    config_path: &Path,
) -> Result<()> {
    /// Models up to this many values (64 MB of f32) are cheap to build just
    /// to report which tensors differ.
    const CHEAP: usize = 1 << 24;
    let held: usize = tensors
        .iter()
        .filter(|(name, _)| !name.ends_with("num_batches_tracked"))
        .map(|(_, t)| t.numel())
        .sum();
    let needed = min_state_dict_values(config);
    if needed.is_some_and(|n| n <= held || n <= CHEAP) {
        return Ok(());
    }
    let needed = needed.map_or_else(
        || "more values than can be counted".to_string(),
        |n| format!("{n} values ({} as f32)", bytes_text(n.saturating_mul(4))),
    );
    Err(Error::data(
        config_path,
        None,
        format!(
            "the layer sizes describe a model of {needed}, but {} holds {held} values ({}): \
             the config does not match the weights (refused before building the model)",
            weights.display(),
            bytes_text(held.saturating_mul(4)),
        ),
    ))
}

/// A byte count for people: `512 B`, `4.2 MB`, `17.6 TB`.
fn bytes_text(bytes: usize) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Builds the model of `config` and loads the weights file into it; a config
/// far larger than its weights is refused before anything is allocated.
fn model_from_weights(config: CrnnConfig, weights: &Path, config_path: &Path) -> Result<Crnn> {
    let tensors = load_weights(weights)?;
    check_size(&config, &tensors, weights, config_path)?;
    let mut model = Crnn::new(config, &mut Rng::seed(0))?;
    model
        .load_state_dict(&tensors)
        .map_err(|e| mismatch(weights, &config_path.display().to_string(), e))?;
    Ok(model)
}

/// A weights file that does not fit the model described by `source`.
fn mismatch(weights: &Path, source: &str, e: Error) -> Error {
    let detail = match e {
        Error::InvalidArgument { message, .. } => message,
        other => other.to_string(),
    };
    Error::data(
        weights,
        None,
        format!("the tensors do not match the model of {source}: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::BlockConfig;

    /// The count from the sizes alone is the count of the state dict.
    #[test]
    fn min_state_dict_values_counts_the_state_dict() {
        let mut configs = vec![
            CrnnConfig::preset("crnn-s").unwrap(),
            CrnnConfig::preset("crnn-t").unwrap().with_classes(5),
        ];
        let mut one_way = CrnnConfig::preset("crnn-s").unwrap();
        one_way.bidirectional = false;
        one_way.layers = 3;
        one_way.in_channels = 3;
        one_way.blocks.push(BlockConfig {
            out_channels: 5,
            pool: None,
        });
        configs.push(one_way);
        for config in configs {
            let model = Crnn::new(config.clone(), &mut Rng::seed(0)).unwrap();
            let numel: usize = model.state_dict().iter().map(|(_, t)| t.numel()).sum();
            assert_eq!(min_state_dict_values(&config), Some(numel), "{config:?}");
        }
    }

    #[test]
    fn min_state_dict_values_overflow_is_none() {
        let mut config = CrnnConfig::preset("crnn-s").unwrap();
        config.hidden = usize::MAX / 4;
        assert_eq!(min_state_dict_values(&config), None);
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(4_200_000), "4.2 MB");
        assert_eq!(bytes_text(1 << 42), "4.4 TB");
    }
}
