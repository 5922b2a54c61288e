//! The tape's contract: what is recorded, what gradients come back, and what
//! misuse returns as an error.

use retort::{ops, Param, Tape, Tensor};

fn t(values: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_slice(values, dims).unwrap()
}

#[test]
fn gradients_accumulate_when_a_value_is_used_twice() {
    let x = t(&[3.0, -2.0], &[2]).tracked();
    let mut tape = Tape::new();
    let sq = ops::mul(&mut tape, &x, &x).unwrap();
    let both = ops::add(&mut tape, &sq, &x).unwrap();
    let loss = ops::sum_all(&mut tape, &both).unwrap();
    let grads = tape.backward(&loss).unwrap();
    // d/dx (x² + x) = 2x + 1
    assert_eq!(grads.get(&x).unwrap().data(), &[7.0, -3.0]);
}

#[test]
fn a_no_grad_tape_records_nothing_and_its_outputs_are_untracked() {
    let w = Param::new(t(&[1.0, 2.0], &[2]));
    let mut tape = Tape::no_grad();
    let y = ops::mul(&mut tape, w.tensor(), w.tensor()).unwrap();
    assert!(!y.is_tracked());
    assert!(tape.is_empty());
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    assert!(tape.backward(&loss).is_err());
}

#[test]
fn ops_on_untracked_inputs_are_not_recorded() {
    let mut tape = Tape::new();
    let y = ops::exp(&mut tape, &t(&[1.0], &[1])).unwrap();
    assert!(!y.is_tracked());
    assert!(tape.is_empty());
}

#[test]
fn detach_stops_the_gradient() {
    let x = t(&[2.0], &[1]).tracked();
    let mut tape = Tape::new();
    let y = ops::mul(&mut tape, &x, &x.detach()).unwrap();
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.get(&x).unwrap().data(), &[2.0]);
}

#[test]
fn backward_twice_is_an_error() {
    let x = t(&[1.0], &[1]).tracked();
    let mut tape = Tape::new();
    let loss = ops::sum_all(&mut tape, &x).unwrap();
    tape.backward(&loss).unwrap();
    let err = tape.backward(&loss).unwrap_err().to_string();
    assert!(err.contains("already"), "{err}");
}

#[test]
fn backward_from_a_non_scalar_is_an_error() {
    let x = t(&[1.0, 2.0], &[2]).tracked();
    let mut tape = Tape::new();
    let y = ops::exp(&mut tape, &x).unwrap();
    let err = tape.backward(&y).unwrap_err().to_string();
    assert!(err.contains("scalar"), "{err}");
}

#[test]
fn backward_empties_the_tape() {
    let x = t(&[1.0, 2.0], &[2]).tracked();
    let mut tape = Tape::new();
    let y = ops::exp(&mut tape, &x).unwrap();
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    assert_eq!(tape.len(), 2);
    tape.backward(&loss).unwrap();
    assert!(tape.is_empty());
}

#[test]
fn gradients_hold_only_leaves() {
    let x = t(&[1.0, 2.0], &[2]).tracked();
    let mut tape = Tape::new();
    let y = ops::exp(&mut tape, &x).unwrap();
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.len(), 1);
    assert!(grads.get(&y).is_none());
}

#[test]
fn parameters_live_across_steps_while_each_tape_is_dropped() {
    // Fit y = 3x - 1 by gradient descent, one fresh tape per step.
    let mut w = Param::new(t(&[0.0], &[1, 1]));
    let mut b = Param::new(t(&[0.0], &[1]));
    let id = w.tensor().id();
    let x = t(&[-1.0, 0.0, 1.0, 2.0], &[4, 1]);
    let y = t(&[-4.0, -1.0, 2.0, 5.0], &[4, 1]);
    let mut first_loss = None;
    let mut last_loss = 0.0;
    for _ in 0..200 {
        let mut tape = Tape::new();
        let pred = ops::linear(&mut tape, &x, w.tensor(), Some(b.tensor())).unwrap();
        let loss = ops::mse_loss(&mut tape, &pred, &y, ops::Reduction::Mean).unwrap();
        last_loss = loss.item().unwrap();
        first_loss.get_or_insert(last_loss);
        let grads = tape.backward(&loss).unwrap();
        let (gw, gb) = (
            w.grad(&grads).unwrap().to_vec(),
            b.grad(&grads).unwrap().to_vec(),
        );
        drop(tape);
        w.values_mut()
            .iter_mut()
            .zip(&gw)
            .for_each(|(v, g)| *v -= 0.1 * g);
        b.values_mut()
            .iter_mut()
            .zip(&gb)
            .for_each(|(v, g)| *v -= 0.1 * g);
    }
    assert_eq!(w.tensor().id(), id);
    assert!(last_loss < 1e-6 && last_loss < first_loss.unwrap());
    assert!((w.tensor().data()[0] - 3.0).abs() < 1e-3);
    assert!((b.tensor().data()[0] + 1.0).abs() < 1e-3);
}

#[test]
fn updating_a_parameter_never_changes_what_a_live_tape_saved() {
    let mut w = Param::new(t(&[2.0], &[1]));
    let mut tape = Tape::new();
    let y = ops::mul(&mut tape, w.tensor(), w.tensor()).unwrap();
    w.values_mut()[0] = 100.0;
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(w.grad(&grads).unwrap().data(), &[4.0]);
}

#[test]
fn param_set_refuses_another_shape() {
    let mut w = Param::new(t(&[1.0, 2.0], &[2]));
    assert!(w.set(&t(&[1.0], &[1])).is_err());
    w.set(&t(&[5.0, 6.0], &[2])).unwrap();
    assert_eq!(w.tensor().data(), &[5.0, 6.0]);
}

#[test]
fn tensor_construction_checks_shapes() {
    assert!(Tensor::from_vec(vec![1.0; 5], &[2, 3]).is_err());
    assert!(Tensor::from_vec(vec![1.0; 16], &[1, 2, 2, 2, 2]).is_err());
    assert_eq!(Tensor::scalar(3.0).item().unwrap(), 3.0);
    assert!(t(&[1.0, 2.0], &[2]).item().is_err());
}
