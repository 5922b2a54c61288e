//! Loss-weight and temperature schedules: their values over a run, their
//! JSON forms, and the values they refuse.

use retort::distill::config::DistillConfig;
use retort::distill::schedule::{RunPoint, Schedule, Shape};
use retort::distill::teachers::combined_logits;
use retort::Tensor;

fn at(step: u64, total: u64, epoch: u64) -> RunPoint {
    RunPoint { step, total, epoch }
}

fn parse(json: &str) -> Schedule {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn a_number_is_a_constant() {
    let s = parse("2.5");
    assert_eq!(s, Schedule::Constant(2.5));
    assert_eq!(s.at(at(0, 10, 0)), 2.5);
    assert_eq!(s.at(at(10, 10, 3)), 2.5);
}

#[test]
fn linear_runs_from_to_over_its_steps_then_stays() {
    let s = parse(r#"{"linear": {"from": 0.0, "to": 1.0, "steps": 100}}"#);
    assert_eq!(s.at(at(0, 1000, 0)), 0.0);
    assert!((s.at(at(25, 1000, 0)) - 0.25).abs() < 1e-6);
    assert_eq!(s.at(at(100, 1000, 0)), 1.0);
    assert_eq!(s.at(at(900, 1000, 0)), 1.0);
    // Without steps, over the whole run: an annealed temperature.
    let t = parse(r#"{"linear": {"from": 8.0, "to": 2.0}}"#);
    assert_eq!(t.at(at(0, 200, 0)), 8.0);
    assert!((t.at(at(100, 200, 0)) - 5.0).abs() < 1e-6);
    assert_eq!(t.at(at(200, 200, 0)), 2.0);
}

#[test]
fn dan_ramp_follows_the_papers_formula() {
    let s = parse(r#"{"dan_ramp": {"max": 2.0}}"#);
    for step in [0u64, 10, 50, 99, 100] {
        let p = step as f64 / 100.0;
        let expected = 2.0 * (2.0 / (1.0 + (-10.0 * p).exp()) - 1.0);
        assert!(
            (s.at(at(step, 100, 0)) as f64 - expected).abs() < 1e-5,
            "step {step}"
        );
    }
    assert_eq!(s.at(at(0, 100, 0)), 0.0);
}

#[test]
fn step_off_switches_a_term_off_by_step_or_epoch() {
    let by_epoch = parse(r#"{"step_off": {"value": 1.5, "after_epoch": 2}}"#);
    assert_eq!(by_epoch.at(at(500, 1000, 1)), 1.5);
    assert_eq!(by_epoch.at(at(501, 1000, 2)), 0.0);
    assert!(by_epoch.is_off_from(at(501, 1000, 2)));
    assert!(!by_epoch.is_off_from(at(0, 1000, 0)));
    let by_step = parse(r#"{"step_off": {"value": 1.0, "after_step": 10}}"#);
    assert_eq!(by_step.at(at(9, 100, 0)), 1.0);
    assert_eq!(by_step.at(at(10, 100, 0)), 0.0);
}

#[test]
fn bad_schedules_are_refused_with_the_key_named() {
    for (json, needle) in [
        (r#"{"linear": {"from": 0.0}}"#, "missing field `to`"),
        (
            r#"{"cubic": {"from": 0.0}}"#,
            "a schedule is a number or one of",
        ),
        (r#""high""#, "a schedule is a number or an object"),
        (
            r#"{"linear": {"from": 0.0, "to": 1.0, "slope": 2}}"#,
            "unknown field `slope`",
        ),
    ] {
        let err = serde_json::from_str::<Schedule>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{json}: {err}");
    }
    let negative = Schedule::Shaped(Shape::Linear {
        from: 1.0,
        to: -1.0,
        steps: None,
    });
    let err = negative
        .validate_weight("kd.weight")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kd.weight") && err.contains("at least 0"),
        "{err}"
    );
    let err = Schedule::Constant(0.0)
        .validate_temperature("kd.temperature")
        .unwrap_err()
        .to_string();
    assert!(err.contains("positive"), "{err}");
    let err = parse(r#"{"dan_ramp": {"max": 1.0}}"#)
        .validate_temperature("kd.temperature")
        .unwrap_err()
        .to_string();
    assert!(err.contains("linear"), "{err}");
    let err = parse(r#"{"step_off": {"value": 1.0}}"#)
        .validate_weight("w")
        .unwrap_err()
        .to_string();
    assert!(err.contains("after_step or after_epoch"), "{err}");
}

#[test]
fn averaged_soft_targets_are_the_weighted_mean_of_the_teachers_distributions() {
    let a = Tensor::from_vec(vec![2.0, 0.0, -1.0], &[1, 1, 3]).unwrap();
    let b = Tensor::from_vec(vec![-1.0, 1.0, 0.5], &[1, 1, 3]).unwrap();
    let t = 4.0f32;
    let z = combined_logits(&[(&a, 3.0), (&b, 1.0)], t).unwrap();
    let soft = |v: &[f32]| -> Vec<f32> {
        let e: Vec<f32> = v.iter().map(|x| (x / t).exp()).collect();
        let s: f32 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    };
    let (pa, pb, pz) = (soft(a.data()), soft(b.data()), soft(z.data()));
    for k in 0..3 {
        assert!(
            (pz[k] - (0.75 * pa[k] + 0.25 * pb[k])).abs() < 1e-6,
            "class {k}"
        );
    }
    // One teacher: its logits unchanged.
    assert_eq!(combined_logits(&[(&a, 1.0)], t).unwrap().data(), a.data());
}

#[test]
fn a_config_with_only_the_required_keys_takes_the_documented_defaults() {
    let cfg: DistillConfig = serde_json::from_str(
        r#"{"train": ["t"], "val": ["v"], "out": "o", "budget": {"steps": 10},
            "strategy": {"kind": "teacher_student", "teachers": [{"model": "runs/t/best"}],
                         "student": {"preset": "crnn-s"}}}"#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.batch_size, 32);
    assert_eq!(cfg.lr, 1e-3);
    assert_eq!(cfg.augment, 0.0);
    let retort::distill::Strategy::TeacherStudent {
        objective,
        cache_teacher,
        ..
    } = &cfg.strategy
    else {
        panic!("not teacher_student")
    };
    assert!(cache_teacher);
    let kd = objective.kd.as_ref().unwrap();
    assert_eq!(kd.temperature, Schedule::Constant(4.0));
    assert_eq!(kd.weight, Schedule::Constant(1.0));
    // The config as run is written back and reads the same.
    let again: DistillConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(again, cfg);
}
