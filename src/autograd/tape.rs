//! The tape: a list of op records, walked once in reverse by `backward`.

use super::Gradients;
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor, TensorId};

/// The backward rule of one recorded op. It receives the gradient of the op's
/// output (always of the output's shape: the tape checks every gradient a rule
/// returns against its input's recorded shape) and, for each input, whether
/// that input needs a gradient; it returns one entry per input (`None` where
/// no gradient is needed).
pub type BackwardFn = Box<dyn FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send>;

struct Record {
    op: &'static str,
    output: TensorId,
    inputs: Vec<TensorId>,
    input_shapes: Vec<Shape>,
    needs_grad: Vec<bool>,
    backward: BackwardFn,
}

/// A define-by-run tape. Ops take `&mut Tape` and record themselves when the
/// tape records and any input is tracked.
pub struct Tape {
    records: Vec<Record>,
    recording: bool,
    spent: bool,
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A recording tape: ops on tracked inputs record their backward rules.
    pub fn new() -> Tape {
        Tape {
            records: Vec::new(),
            recording: true,
            spent: false,
        }
    }

    /// A tape that records nothing: outputs are untracked and no op keeps
    /// anything for a backward pass. Teachers and evaluation run on it.
    pub fn no_grad() -> Tape {
        Tape {
            records: Vec::new(),
            recording: false,
            spent: false,
        }
    }

    /// Whether this tape records ops.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of ops recorded so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no op has been recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether an op on these inputs will be recorded: ops use it to skip
    /// saving what only the backward pass needs.
    pub fn wants_grad(&self, inputs: &[&Tensor]) -> bool {
        self.recording && inputs.iter().any(|t| t.is_tracked())
    }

    /// Records an op whose forward result is `output`. When the tape records
    /// and an input is tracked, the output becomes tracked and `backward` is
    /// kept; otherwise `backward` is dropped at once and the output stays untracked.
    pub fn record(
        &mut self,
        op: &'static str,
        mut output: Tensor,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + 'static,
    ) -> Tensor {
        if !self.wants_grad(inputs) {
            return output;
        }
        output.mark_tracked();
        self.records.push(Record {
            op,
            output: output.id(),
            inputs: inputs.iter().map(|t| t.id()).collect(),
            input_shapes: inputs.iter().map(|t| *t.shape()).collect(),
            needs_grad: inputs.iter().map(|t| t.is_tracked()).collect(),
            backward: Box::new(backward),
        });
        output
    }

    /// Runs the backward pass from a scalar `loss` and returns the gradients
    /// of every tracked leaf it depends on. The tape's records are consumed:
    /// a second call is an error.
    pub fn backward(&mut self, loss: &Tensor) -> Result<Gradients> {
        if self.spent {
            return Err(Error::Autograd(
                "backward was already run on this tape; record a new step on a new tape".into(),
            ));
        }
        if loss.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward needs a scalar loss, got shape {:?}",
                loss.shape()
            )));
        }
        if !loss.is_tracked() {
            return Err(Error::Autograd(
                "the loss does not depend on any tracked tensor (was it computed on a no-grad tape?)"
                    .into(),
            ));
        }
        self.spent = true;
        let records = std::mem::take(&mut self.records);
        let mut grads = Gradients::default();
        grads.accumulate(
            loss.id(),
            Tensor::full(loss.dims(), 1.0)?.to_device(loss.device())?,
        )?;
        for record in records.into_iter().rev() {
            let Some(grad_out) = grads.take(record.output) else {
                continue;
            };
            let input_grads = (record.backward)(&grad_out, &record.needs_grad)?;
            if input_grads.len() != record.inputs.len() {
                return Err(Error::Autograd(format!(
                    "backward of {} returned {} gradients for {} inputs",
                    record.op,
                    input_grads.len(),
                    record.inputs.len()
                )));
            }
            for (((id, shape), needs), grad) in record
                .inputs
                .iter()
                .zip(&record.input_shapes)
                .zip(&record.needs_grad)
                .zip(input_grads)
            {
                if let (true, Some(g)) = (*needs, grad) {
                    if g.shape() != shape {
                        return Err(Error::Autograd(format!(
                            "backward of {} gave a gradient of shape {:?} for an input of shape {:?}",
                            record.op,
                            g.shape(),
                            shape
                        )));
                    }
                    grads.accumulate(*id, g)?;
                }
            }
        }
        // Gradients of intermediate values were consumed on the way (records
        // are in topological order); what is left belongs to leaves.
        Ok(grads)
    }
}
