//! The config parsers: a model config (`CrnnConfig`, then `validate`) and a
//! training config (`TrainConfig`, then `validate`), from arbitrary JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use retort::nn::CrnnConfig;
use retort::train::TrainConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = serde_json::from_slice::<CrnnConfig>(data) {
        if cfg.validate().is_ok() {
            // The derived sizes of a valid config must not panic either.
            let _ = cfg.feature_height();
            let _ = cfg.min_width();
            let _ = cfg.time_steps(cfg.min_width());
            let _ = cfg.sequence_features();
            let _ = cfg.rnn_features();
            // The size check of checkpoint loading counts with checked arithmetic.
            let _ = retort::checkpoint::min_state_dict_values(&cfg);
        }
    }
    if let Ok(cfg) = serde_json::from_slice::<TrainConfig>(data) {
        let _ = cfg.validate();
    }
});
