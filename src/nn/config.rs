//! The configuration of a CRNN: conv blocks, LSTM and head sizes, presets.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// One conv block: conv 3x3 pad 1 (no bias), BatchNorm, ReLU, then an
/// optional max pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// Output channels of the conv.
    pub out_channels: usize,
    /// Max-pool window (height, width), with stride equal to the window, e.g.
    /// `(2, 2)`, or `(2, 1)` to halve the height only; `None` for no pooling.
    /// In JSON: `[2, 2]` or `null` (or absent).
    pub pool: Option<(usize, usize)>,
}

/// A CRNN: conv blocks over a (in_channels, height, W) image, the columns
/// of the last feature map as a sequence, a stacked LSTM and a linear head
/// to `num_classes` (class 0 is the CTC blank).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrnnConfig {
    /// Image channels (1 for grey text lines).
    pub in_channels: usize,
    /// Image height in pixels (32 for the presets).
    pub height: usize,
    /// The conv blocks, in order (`b1`, `b2`, …).
    pub blocks: Vec<BlockConfig>,
    /// LSTM hidden units per direction.
    pub hidden: usize,
    /// Number of stacked LSTM layers.
    pub layers: usize,
    /// Whether the LSTM reads both ways.
    pub bidirectional: bool,
    /// Output classes including the blank (charset size + 1).
    pub num_classes: usize,
    /// Dropout probability between LSTM layers and before the head, in
    /// training only; 0 (the default) turns it off.
    #[serde(default)]
    pub dropout: f32,
    /// Early exits (Phuong & Lampert, "Distillation-based training for
    /// multi-exit architectures", ICCV 2019, §3): the names of the conv
    /// blocks (`"b2"`, `"b3"`, …) after which an extra CTC classifier sits,
    /// so that inference may stop there ([`crate::nn::Crnn::forward_to_exit`]).
    /// Each exit maps its block's output, read as a sequence of columns
    /// exactly as the LSTM's input is, through a linear layer to
    /// `num_classes` scores per column. An exit's block must not be the last
    /// one and no later block may pool the width, so that the exit's frames
    /// align 1:1 with the head's (see [`CrnnConfig::validate`]). Empty (the
    /// default, and then absent from the JSON) for a model without exits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exits: Vec<String>,
}

/// Names of the built-in presets, as in `reference-models.md`.
const PRESETS: &[&str] = &["crnn-t", "crnn-s"];

/// A block with `out` channels and an optional pool.
fn block(out: usize, pool: Option<(usize, usize)>) -> BlockConfig {
    BlockConfig {
        out_channels: out,
        pool,
    }
}

impl CrnnConfig {
    /// The preset `name` as in `reference-models.md`, with 37 classes:
    /// `crnn-t` (teacher: conv 32-64-128-128, BiLSTM 2 x 128) or `crnn-s`
    /// (student: conv 8-16-32-32, BiLSTM 1 x 48). An unknown name is an
    /// error that lists the presets.
    pub fn preset(name: &str) -> Result<CrnnConfig> {
        let (channels, hidden, layers) = match name {
            "crnn-t" => ([32, 64, 128, 128], 128, 2),
            "crnn-s" => ([8, 16, 32, 32], 48, 1),
            _ => {
                return Err(Error::invalid(
                    "CrnnConfig::preset",
                    format!(
                        "unknown model preset `{name}`; the presets are {}",
                        PRESETS.join(", ")
                    ),
                ))
            }
        };
        Ok(CrnnConfig {
            in_channels: 1,
            height: 32,
            blocks: vec![
                block(channels[0], Some((2, 2))),
                block(channels[1], Some((2, 2))),
                block(channels[2], None),
                block(channels[3], Some((2, 1))),
            ],
            hidden,
            layers,
            bidirectional: true,
            num_classes: 37,
            dropout: 0.0,
            exits: Vec::new(),
        })
    }

    /// The names [`CrnnConfig::preset`] accepts.
    pub fn preset_names() -> &'static [&'static str] {
        PRESETS
    }

    /// The same configuration with `k` output classes (charset size + 1).
    pub fn with_classes(mut self, k: usize) -> CrnnConfig {
        self.num_classes = k;
        self
    }

    /// Checks that the configuration describes a model that can be built:
    /// non-zero sizes, at least one block, pools with non-zero windows that
    /// leave a feature map at least one pixel high, at least two classes
    /// (the blank and one symbol), dropout in [0, 1), and exits that each
    /// name a block (`b1` … `bk`) once, not the last block, and a block
    /// after which no pool narrows the width: an exit's frames must align
    /// 1:1 with the head's (after `b1` of `crnn-t` the feature map is still
    /// at twice the final time resolution, so `b1` cannot hold an exit;
    /// `b2` and `b3` can).
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::invalid("CrnnConfig", message));
        if self.in_channels == 0 {
            return bad("in_channels must be at least 1".into());
        }
        if self.height == 0 {
            return bad("height must be at least 1".into());
        }
        if self.blocks.is_empty() {
            return bad("blocks must hold at least one conv block".into());
        }
        let mut h = self.height;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.out_channels == 0 {
                return bad(format!("block b{}: out_channels must be at least 1", i + 1));
            }
            if let Some((ph, pw)) = b.pool {
                if ph == 0 || pw == 0 {
                    return bad(format!(
                        "block b{}: pool window {:?} must be non-zero",
                        i + 1,
                        (ph, pw)
                    ));
                }
                if h < ph {
                    return bad(format!(
                        "block b{}: pool height {ph} is larger than the feature map height {h} \
                         (image height {})",
                        i + 1,
                        self.height
                    ));
                }
                h /= ph;
            }
        }
        if self.hidden == 0 {
            return bad("hidden must be at least 1".into());
        }
        if self.layers == 0 {
            return bad("layers must be at least 1".into());
        }
        if self.num_classes < 2 {
            return bad(format!(
                "num_classes is {}, at least 2 are needed (the blank and one symbol)",
                self.num_classes
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        // The derived sizes must be representable (a fuzzed config overflowed them).
        let min_width = self
            .blocks
            .iter()
            .filter_map(|b| b.pool)
            .try_fold(1usize, |acc, (_, pw)| acc.checked_mul(pw));
        let sequence = self
            .blocks
            .last()
            .and_then(|b| b.out_channels.checked_mul(h));
        let rnn = self.hidden.checked_mul(2);
        if min_width.is_none() || sequence.is_none() || rnn.is_none() {
            return bad(
                "sizes too large: the pool widths, channels or hidden units overflow".into(),
            );
        }
        self.validate_exits()
    }

    /// The exit checks of [`CrnnConfig::validate`] (the blocks already checked).
    fn validate_exits(&self) -> Result<()> {
        let bad = |message: String| Err(Error::invalid("CrnnConfig", message));
        let last = self.blocks.len();
        for (i, name) in self.exits.iter().enumerate() {
            let Some(b) = self.exit_block(name) else {
                return bad(format!(
                    "exit `{name}` is not a conv block of the model: the blocks are b1 … b{last}"
                ));
            };
            if self.exits[..i].contains(name) {
                return bad(format!("exit `{name}` is listed more than once"));
            }
            if b + 1 == last {
                return bad(format!(
                    "exit `{name}` is the last block, whose output already feeds the LSTM \
                     and head; an exit must follow an earlier block"
                ));
            }
            let later: Vec<(usize, usize)> = self.blocks[b + 1..]
                .iter()
                .enumerate()
                .filter_map(|(j, blk)| blk.pool.map(|(_, pw)| (b + 2 + j, pw)))
                .filter(|&(_, pw)| pw > 1)
                .collect();
            if !later.is_empty() {
                let factor: usize = later.iter().map(|&(_, pw)| pw).product();
                let pools: Vec<String> = later
                    .iter()
                    .map(|(j, pw)| format!("b{j} pools the width by {pw}"))
                    .collect();
                return bad(format!(
                    "exit `{name}`: {}, so the output of {name} is at {factor} times the \
                     final time resolution and its frames would not align 1:1 with the \
                     head's; an exit must follow a block after which the width is not pooled",
                    pools.join(", ")
                ));
            }
            if self.exit_features(name).is_none() {
                return bad(format!(
                    "exit `{name}`: sizes too large, its channels times height overflow"
                ));
            }
        }
        Ok(())
    }

    /// The index (0 for `b1`) of the block called `name` (`"b1"` … `"bk"`,
    /// exactly as [`crate::nn::CrnnOutput::features`] names them), if any.
    pub fn exit_block(&self, name: &str) -> Option<usize> {
        let digits = name.strip_prefix('b')?;
        let i: usize = digits.parse().ok()?;
        (i >= 1 && i <= self.blocks.len() && format!("b{i}") == name).then(|| i - 1)
    }

    /// The height of the feature map after block `index` (0 for `b1`): `height`
    /// divided by the window heights of the pools up to and including it.
    pub fn height_after(&self, index: usize) -> usize {
        self.blocks
            .iter()
            .take(index + 1)
            .filter_map(|b| b.pool)
            .fold(self.height, |h, (ph, _)| h / ph.max(1))
    }

    /// Features per frame of the exit after block `name`: the block's
    /// channels times [`CrnnConfig::height_after`] it, the input size of the
    /// exit's linear classifier (`None` for a name that is not a block, or on
    /// overflow). For `crnn-t`, `b2` and `b3` give 64·8 = 512 and 128·8 = 1024.
    pub fn exit_features(&self, name: &str) -> Option<usize> {
        let b = self.exit_block(name)?;
        self.blocks[b]
            .out_channels
            .checked_mul(self.height_after(b))
    }

    /// The height of the last feature map: `height` divided (rounding down,
    /// as PyTorch's pooling) by each pool's window height (4 for the presets).
    pub fn feature_height(&self) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool)
            .fold(self.height, |h, (ph, _)| h / ph.max(1))
    }

    /// The number of time steps for an image `width` pixels wide: `width`
    /// divided (rounding down, as PyTorch's pooling) by each pool's window
    /// width (`width / 4` for the presets). May be 0 for very narrow widths.
    pub fn time_steps(&self, width: usize) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool)
            .fold(width, |w, (_, pw)| w / pw.max(1))
    }

    /// The narrowest image width that gives at least one time step (the
    /// product of the pools' window widths).
    pub fn min_width(&self) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool)
            .map(|(_, pw)| pw.max(1))
            .product()
    }

    /// Features per time step fed to the LSTM: last block's channels times
    /// [`CrnnConfig::feature_height`] (512 for `crnn-t`, 128 for `crnn-s`).
    pub fn sequence_features(&self) -> usize {
        self.blocks.last().map_or(0, |b| b.out_channels) * self.feature_height()
    }

    /// Output features of the LSTM per step: `2 * hidden` when bidirectional.
    pub fn rnn_features(&self) -> usize {
        if self.bidirectional {
            2 * self.hidden
        } else {
            self.hidden
        }
    }
}
