//! Training a CRNN recogniser with CTC: the configuration, one step, the
//! loop with validation and checkpoints, evaluation and the training record
//! (metrics log and plot).

mod config;
mod evaluate;
mod log;
mod plot;
mod run;
mod state_file;
mod step;

pub use config::{Budget, ModelSource, TrainConfig};
pub use evaluate::{
    evaluate, evaluate_at, recognize_batch, recognize_batch_at, EvalReport, Mistake, Recognized,
};
pub use log::MetricsLog;
pub use plot::write_training_plot;
pub(crate) use run::{build_model, last_good, load_charset, progress_bar, say, training_data};
pub use run::{resume, train, TrainSummary, RESUME_FILE};
pub(crate) use state_file::{optimizer_tensors, read_state, write_state};
pub use step::{apply_gradients, ctc_objective, train_step, StepStats};
