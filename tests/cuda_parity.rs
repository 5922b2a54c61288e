//! CPU vs CUDA parity: every op family, forward and backward, on random
//! inputs, the CUDA wrappers of `retort::cuda` against the CPU kernels of
//! `retort::cpu` (or the ops built on them), to 1e-4 relative (CTC and the
//! LSTM to 1e-3). Without a GPU each test prints that it was skipped and
//! why; with `RETORT_REQUIRE_GPU=1` it fails instead.
//!
//! "Relative" is per value with a floor at the root mean square of the
//! reference, so values that cancel to near 0 are held to the tensor's scale.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu_common;
use gpu_common::{assert_close, gpu, values};

use retort::cpu;
use retort::cpu::conv2d::ConvGeom;
use retort::cuda::elementwise::{Binary, Unary};
use retort::cuda::gemm::GpuMat;
use retort::cuda::loss::Upstream;
use retort::cuda::{self, CudaDevice, DeviceBuffer};
use retort::ops::{self, Reduction};
use retort::tensor::{broadcast_shapes, Shape};
use retort::{Rng, Tape, Tensor};

type Buf = DeviceBuffer<f32>;

fn up(dev: &CudaDevice, v: &[f32]) -> Buf {
    dev.upload(v).unwrap()
}

fn down(b: &Buf) -> Vec<f32> {
    b.to_vec().unwrap()
}

/// The output of `f` on tracked copies of `inputs` and the gradients of
/// Σ output · `upstream` with respect to each input, on the CPU.
fn cpu_op(
    inputs: &[(&[f32], &[usize])],
    upstream: &[f32],
    f: impl FnOnce(&mut Tape, &[Tensor]) -> retort::Result<Tensor>,
) -> (Vec<f32>, Vec<Option<Vec<f32>>>) {
    let ts: Vec<Tensor> = inputs
        .iter()
        .map(|(v, d)| Tensor::from_vec(v.to_vec(), d).unwrap().tracked())
        .collect();
    let mut tape = Tape::new();
    let y = f(&mut tape, &ts).unwrap();
    let g = Tensor::from_vec(upstream.to_vec(), y.dims()).unwrap();
    let weighted = ops::mul_const(&mut tape, &y, &g).unwrap();
    let loss = ops::sum_all(&mut tape, &weighted).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let gs = ts
        .iter()
        .map(|t| grads.get(t).map(|g| g.to_vec()))
        .collect();
    (y.to_vec(), gs)
}

fn shape(d: &[usize]) -> Shape {
    Shape::new(d).unwrap()
}

#[test]
fn opening_a_device_that_does_not_exist_is_an_error() {
    assert!(CudaDevice::new(10_000).is_err());
}

#[test]
fn elementwise_maps_and_broadcast_zips_match_the_cpu() {
    let Some(dev) = gpu("elementwise") else {
        return;
    };
    let mut rng = Rng::seed(1);
    let dims = [3, 4, 5];
    let n = 60;
    let g = values(&mut rng, n, -1.0, 1.0);
    let unaries = [
        (Unary::Scale(-1.5), -2.0, 2.0),
        (Unary::AddScalar(0.25), -2.0, 2.0),
        (Unary::Exp, -2.0, 2.0),
        (Unary::Log, 0.1, 3.0),
        (Unary::Relu, -1.0, 1.0),
        (Unary::Sigmoid, -6.0, 6.0),
        (Unary::Tanh, -3.0, 3.0),
        (Unary::Square, -2.0, 2.0),
        (Unary::Sqrt, 0.1, 3.0),
        (Unary::Abs, -1.0, 1.0),
        (Unary::Pow(1.7), 0.1, 2.0),
    ];
    for (op, lo, hi) in unaries {
        let x = values(&mut rng, n, lo, hi);
        let (y_cpu, gx) = cpu_op(&[(&x, &dims)], &g, |tape, t| match op {
            Unary::Scale(s) => ops::scale(tape, &t[0], s),
            Unary::AddScalar(s) => ops::add_scalar(tape, &t[0], s),
            Unary::Exp => ops::exp(tape, &t[0]),
            Unary::Log => ops::log(tape, &t[0]),
            Unary::Relu => ops::relu(tape, &t[0]),
            Unary::Sigmoid => ops::sigmoid(tape, &t[0]),
            Unary::Tanh => ops::tanh(tape, &t[0]),
            Unary::Square => ops::square(tape, &t[0]),
            Unary::Sqrt => ops::sqrt(tape, &t[0]),
            Unary::Abs => ops::abs(tape, &t[0]),
            Unary::Pow(p) => ops::pow(tape, &t[0], p),
        });
        let xd = up(&dev, &x);
        let yd = cuda::elementwise::unary_forward(&dev, op, &xd).unwrap();
        assert_close(&format!("{op:?} forward"), &down(&yd), &y_cpu, 1e-4);
        let dx = cuda::elementwise::unary_backward(&dev, op, &up(&dev, &g), &xd, &yd).unwrap();
        assert_close(
            &format!("{op:?} backward"),
            &down(&dx),
            gx[0].as_ref().unwrap(),
            1e-4,
        );
        let mut inplace = up(&dev, &x);
        cuda::elementwise::unary_in_place(&dev, op, &mut inplace).unwrap();
        assert_close(&format!("{op:?} in place"), &down(&inplace), &y_cpu, 1e-4);
    }

    let pairs: [(&[usize], &[usize]); 6] = [
        (&[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 1, 4], &[3, 4]),
        (&[4], &[2, 3, 1]),
        (&[2, 3, 4, 5], &[3, 1, 1]),
        (&[1], &[2, 5]),
    ];
    for (da, db) in pairs {
        let (sa, sb) = (shape(da), shape(db));
        let out = broadcast_shapes("test", &sa, &sb).unwrap();
        for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
            let a = values(&mut rng, sa.numel(), -1.0, 1.0);
            let b: Vec<f32> = if op == Binary::Div {
                (0..sb.numel())
                    .map(|_| rng.range(0.5, 2.0) * if rng.uniform() < 0.5 { -1.0 } else { 1.0 })
                    .collect()
            } else {
                values(&mut rng, sb.numel(), -1.0, 1.0)
            };
            let gup = values(&mut rng, out.numel(), -1.0, 1.0);
            let (y_cpu, grads) = cpu_op(&[(&a, da), (&b, db)], &gup, |tape, t| match op {
                Binary::Add => ops::add(tape, &t[0], &t[1]),
                Binary::Sub => ops::sub(tape, &t[0], &t[1]),
                Binary::Mul => ops::mul(tape, &t[0], &t[1]),
                Binary::Div => ops::div(tape, &t[0], &t[1]),
            });
            let (ad, bd) = (up(&dev, &a), up(&dev, &b));
            let what = format!("{op:?} {da:?} {db:?}");
            let y = cuda::elementwise::binary_forward(&dev, op, &ad, &sa, &bd, &sb, &out).unwrap();
            assert_close(&format!("{what} forward"), &down(&y), &y_cpu, 1e-4);
            let gd = up(&dev, &gup);
            let (ga, gb) = cuda::elementwise::binary_backward(
                &dev,
                op,
                &ad,
                &sa,
                &bd,
                &sb,
                &gd,
                &out,
                [true, true],
            )
            .unwrap();
            assert_close(
                &format!("{what} grad a"),
                &down(&ga.unwrap()),
                grads[0].as_ref().unwrap(),
                1e-4,
            );
            assert_close(
                &format!("{what} grad b"),
                &down(&gb.unwrap()),
                grads[1].as_ref().unwrap(),
                1e-4,
            );
        }
    }

    let (src, dst) = (shape(&[3, 1, 5]), shape(&[2, 3, 4, 5]));
    let x = values(&mut rng, src.numel(), -1.0, 1.0);
    let e = cuda::elementwise::expand(&dev, &up(&dev, &x), &src, &dst).unwrap();
    assert_eq!(down(&e), retort::tensor::expand(&x, &src, &dst), "expand");
    assert_eq!(
        down(&cuda::elementwise::fill(&dev, 7, 2.5).unwrap()),
        vec![2.5; 7],
        "fill"
    );
    let row = values(&mut rng, 4, -1.0, 1.0);
    let r = cuda::elementwise::repeat_row(&dev, &up(&dev, &row), 3).unwrap();
    assert_eq!(down(&r), row.repeat(3), "repeat_row");
}

#[test]
fn reductions_and_layout_match_the_cpu() {
    let Some(dev) = gpu("reductions and layout") else {
        return;
    };
    let mut rng = Rng::seed(2);
    let pairs: [(&[usize], &[usize]); 7] = [
        (&[2, 3, 4, 5], &[3, 1, 1]),
        (&[2, 3, 4, 5], &[1]),
        (&[2, 3, 4], &[2, 1, 4]),
        (&[5, 7], &[5, 7]),
        (&[6, 8], &[8]),
        (&[3, 1000], &[3, 1]),
        (&[4, 3, 2, 5], &[4, 1, 2, 1]),
    ];
    for (big, small) in pairs {
        let (sb, ss) = (shape(big), shape(small));
        let x = values(&mut rng, sb.numel(), -1.0, 1.0);
        let got = cuda::reduce::reduce_sum_to(&dev, &up(&dev, &x), &sb, &ss).unwrap();
        let want = retort::tensor::reduce_sum_to(&x, &sb, &ss);
        assert_close(
            &format!("sum {big:?} to {small:?}"),
            &down(&got),
            &want,
            1e-4,
        );
    }
    let x = values(&mut rng, 5000, -1.0, 1.0);
    let total = cuda::reduce::sum_all(&dev, &up(&dev, &x)).unwrap();
    assert_close("sum_all", &down(&total), &[x.iter().sum::<f32>()], 1e-4);

    let perms: [(&[usize], &[usize]); 5] = [
        (&[2, 3, 4, 5], &[0, 2, 1, 3]),
        (&[2, 3, 4, 5], &[3, 2, 1, 0]),
        (&[2, 3, 4, 5], &[1, 0, 2, 3]),
        (&[3, 4, 5], &[2, 0, 1]),
        (&[6, 7], &[1, 0]),
    ];
    for (d, perm) in perms {
        let s = shape(d);
        let x = values(&mut rng, s.numel(), -1.0, 1.0);
        let got = cuda::layout::permute(&dev, &up(&dev, &x), &s, perm).unwrap();
        assert_eq!(
            down(&got),
            cpu::layout::permute(&x, &s, perm),
            "permute {d:?} by {perm:?}"
        );
    }

    // concat along axis 1, and its gradient through slices.
    let (d0, d1) = ([2, 3, 4], [2, 5, 4]);
    let (a, b) = (
        values(&mut rng, 24, -1.0, 1.0),
        values(&mut rng, 40, -1.0, 1.0),
    );
    let gup = values(&mut rng, 64, -1.0, 1.0);
    let (y_cpu, grads) = cpu_op(&[(&a, &d0), (&b, &d1)], &gup, |tape, t| {
        ops::concat(tape, &[&t[0], &t[1]], 1)
    });
    let (ad, bd) = (up(&dev, &a), up(&dev, &b));
    let y = cuda::layout::concat(&dev, &[(&ad, &shape(&d0)), (&bd, &shape(&d1))], 1).unwrap();
    assert_eq!(down(&y), y_cpu, "concat");
    let out = shape(&[2, 8, 4]);
    let gd = up(&dev, &gup);
    assert_eq!(
        down(&cuda::layout::slice(&dev, &gd, &out, 1, 0, 3).unwrap()),
        grads[0].clone().unwrap(),
        "concat grad a"
    );
    assert_eq!(
        down(&cuda::layout::slice(&dev, &gd, &out, 1, 3, 8).unwrap()),
        grads[1].clone().unwrap(),
        "concat grad b"
    );

    // slice along the last axis, and its gradient.
    let d = [2, 3, 5];
    let x = values(&mut rng, 30, -1.0, 1.0);
    let gup = values(&mut rng, 12, -1.0, 1.0);
    let (y_cpu, grads) = cpu_op(&[(&x, &d)], &gup, |tape, t| {
        ops::slice(tape, &t[0], 2, 1, 3)
    });
    assert_eq!(
        down(&cuda::layout::slice(&dev, &up(&dev, &x), &shape(&d), 2, 1, 3).unwrap()),
        y_cpu,
        "slice"
    );
    let g = cuda::layout::slice_backward(&dev, &up(&dev, &gup), &shape(&d), 2, 1, 3).unwrap();
    assert_eq!(down(&g), grads[0].clone().unwrap(), "slice backward");

    // flip and length-aware reversal are their own gradients.
    let gup = values(&mut rng, 30, -1.0, 1.0);
    let (y_cpu, grads) = cpu_op(&[(&x, &d)], &gup, |tape, t| ops::flip(tape, &t[0], 1));
    assert_eq!(
        down(&cuda::layout::flip(&dev, &up(&dev, &x), &shape(&d), 1).unwrap()),
        y_cpu,
        "flip"
    );
    assert_eq!(
        down(&cuda::layout::flip(&dev, &up(&dev, &gup), &shape(&d), 1).unwrap()),
        grads[0].clone().unwrap(),
        "flip backward"
    );
    let (d, lengths) = ([5, 3, 2], [5, 2, 0]);
    let (y_cpu, grads) = cpu_op(&[(&x, &d)], &gup, |tape, t| {
        ops::reverse_sequences(tape, &t[0], &lengths)
    });
    let rs = |v: &[f32]| {
        down(&cuda::layout::reverse_sequences(&dev, &up(&dev, v), &shape(&d), &lengths).unwrap())
    };
    assert_eq!(rs(&x), y_cpu, "reverse_sequences");
    assert_eq!(
        rs(&gup),
        grads[0].clone().unwrap(),
        "reverse_sequences backward"
    );
}

#[test]
fn matrix_products_match_the_cpu() {
    let Some(dev) = gpu("gemm") else { return };
    let mut rng = Rng::seed(3);
    use cpu::gemm::{gemm, MatRef};
    for (m, k, n) in [(1, 1, 1), (3, 5, 7), (64, 33, 17), (2, 300, 3)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = values(&mut rng, m * k, -1.0, 1.0);
            let b = values(&mut rng, k * n, -1.0, 1.0);
            let c0 = values(&mut rng, m * n, -1.0, 1.0);
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let am = MatRef::row_major(&a, ar, ac);
            let bm = MatRef::row_major(&b, br, bc);
            let mut c_cpu = c0.clone();
            gemm(
                0.7,
                if ta { am.t() } else { am },
                if tb { bm.t() } else { bm },
                0.3,
                &mut c_cpu,
            );
            let (ad, bd) = (up(&dev, &a), up(&dev, &b));
            let (ag, bg) = (
                GpuMat::row_major(&ad, ar, ac),
                GpuMat::row_major(&bd, br, bc),
            );
            let mut cd = up(&dev, &c0);
            cuda::gemm::gemm(
                &dev,
                0.7,
                if ta { ag.t() } else { ag },
                if tb { bg.t() } else { bg },
                0.3,
                &mut cd,
            )
            .unwrap();
            assert_close(
                &format!("gemm {m}x{k}x{n} t{ta} t{tb}"),
                &down(&cd),
                &c_cpu,
                1e-4,
            );
        }
    }
    // Three products sharing one right-hand matrix.
    let (m, k, n, count) = (4, 6, 5, 3);
    let a = values(&mut rng, count * m * k, -1.0, 1.0);
    let b = values(&mut rng, k * n, -1.0, 1.0);
    let mut c_cpu = vec![0.0; count * m * n];
    for i in 0..count {
        let am = MatRef::row_major(&a[i * m * k..(i + 1) * m * k], m, k);
        gemm(
            1.0,
            am,
            MatRef::row_major(&b, k, n),
            0.0,
            &mut c_cpu[i * m * n..(i + 1) * m * n],
        );
    }
    let (ad, bd) = (up(&dev, &a), up(&dev, &b));
    let mut cd = dev.zeros(count * m * n).unwrap();
    cuda::gemm::gemm_strided_batched(
        &dev,
        1.0,
        (GpuMat::row_major(&ad, m, k), m * k),
        (GpuMat::row_major(&bd, k, n), 0),
        0.0,
        (&mut cd, 0, m * n),
        count,
    )
    .unwrap();
    assert_close("strided batched gemm", &down(&cd), &c_cpu, 1e-4);
}

#[test]
fn softmax_and_log_softmax_with_temperature_match_the_cpu() {
    let Some(dev) = gpu("softmax") else { return };
    let mut rng = Rng::seed(4);
    for k in [1, 5, 37, 300] {
        for t in [1.0, 4.0] {
            let x = values(&mut rng, 7 * k, -5.0, 5.0);
            let g = values(&mut rng, 7 * k, -1.0, 1.0);
            let (xd, gd) = (up(&dev, &x), up(&dev, &g));
            let what = format!("k {k} T {t}");
            let ls = cuda::softmax::log_softmax(&dev, &xd, k, t).unwrap();
            let ls_cpu = cpu::softmax::log_softmax(&x, k, t);
            assert_close(&format!("log_softmax {what}"), &down(&ls), &ls_cpu, 1e-4);
            let sm = cuda::softmax::softmax(&dev, &xd, k, t).unwrap();
            let sm_cpu = cpu::softmax::softmax(&x, k, t);
            assert_close(&format!("softmax {what}"), &down(&sm), &sm_cpu, 1e-4);
            let dls = cuda::softmax::log_softmax_backward(&dev, &ls, &gd, k, t).unwrap();
            assert_close(
                &format!("log_softmax backward {what}"),
                &down(&dls),
                &cpu::softmax::log_softmax_backward(&ls_cpu, &g, k, t),
                1e-4,
            );
            let dsm = cuda::softmax::softmax_backward(&dev, &sm, &gd, k, t).unwrap();
            assert_close(
                &format!("softmax backward {what}"),
                &down(&dsm),
                &cpu::softmax::softmax_backward(&sm_cpu, &g, k, t),
                1e-4,
            );
        }
    }
}

#[test]
fn convolution_im2col_and_col2im_match_the_cpu() {
    let Some(dev) = gpu("conv") else { return };
    let mut rng = Rng::seed(5);
    use cpu::conv2d as c2d;
    // (c, h, w), kernel, stride, padding, out channels, batch, bias
    let cases = [
        ((2, 7, 9), (3, 3), (1, 1), (1, 1), 4, 3, true),
        ((3, 8, 6), (3, 3), (2, 2), (1, 1), 5, 2, false),
        ((4, 5, 5), (1, 1), (1, 1), (0, 0), 3, 2, true),
        ((1, 32, 20), (3, 3), (1, 1), (1, 1), 8, 2, false),
        ((2, 6, 7), (1, 3), (1, 2), (0, 1), 3, 1, true),
    ];
    for (chw, k, s, p, o, n, with_bias) in cases {
        let g = ConvGeom::new(chw, k, s, p).unwrap();
        let what = format!("{g:?} o {o} n {n}");
        let (ck, ncols) = (g.col_rows(), g.col_cols());
        let x = values(&mut rng, n * g.in_len(), -1.0, 1.0);
        let w = values(&mut rng, o * ck, -0.5, 0.5);
        let bias = values(&mut rng, o, -0.5, 0.5);
        let dy = values(&mut rng, n * o * ncols, -1.0, 1.0);
        let (xd, wd, bd, dyd) = (up(&dev, &x), up(&dev, &w), up(&dev, &bias), up(&dev, &dy));

        let mut col_cpu = vec![0.0; n * ck * ncols];
        let mut back_cpu = vec![0.0; n * g.in_len()];
        for i in 0..n {
            let cols = &mut col_cpu[i * ck * ncols..(i + 1) * ck * ncols];
            c2d::im2col(&x[i * g.in_len()..(i + 1) * g.in_len()], &g, cols);
            c2d::col2im_add(
                cols,
                &g,
                &mut back_cpu[i * g.in_len()..(i + 1) * g.in_len()],
            );
        }
        let col = cuda::conv::im2col(&dev, &xd, &g, n).unwrap();
        assert_eq!(down(&col), col_cpu, "im2col {what}");
        assert_close(
            &format!("col2im {what}"),
            &down(&cuda::conv::col2im(&dev, &col, &g, n).unwrap()),
            &back_cpu,
            1e-4,
        );

        let b_cpu = with_bias.then_some(&bias[..]);
        let mut y_cpu = vec![0.0; n * o * ncols];
        c2d::conv2d_forward(&x, &g, &w, o, b_cpu, &mut y_cpu);
        let mut y = dev.zeros(n * o * ncols).unwrap();
        cuda::conv::conv2d_forward(&dev, &xd, &g, &wd, o, with_bias.then_some(&bd), &mut y)
            .unwrap();
        assert_close(&format!("conv forward {what}"), &down(&y), &y_cpu, 1e-4);

        let mut dx_cpu = vec![0.0; n * g.in_len()];
        c2d::conv2d_backward_input(&dy, &g, &w, o, &mut dx_cpu);
        let mut dx = dev.zeros(n * g.in_len()).unwrap();
        cuda::conv::conv2d_backward_input(&dev, &dyd, &g, &wd, o, &mut dx).unwrap();
        assert_close(
            &format!("conv grad input {what}"),
            &down(&dx),
            &dx_cpu,
            1e-4,
        );

        let mut dw_cpu = vec![0.0; o * ck];
        c2d::conv2d_backward_weight(&dy, &x, &g, o, &mut dw_cpu);
        let mut dw = dev.zeros(o * ck).unwrap();
        cuda::conv::conv2d_backward_weight(&dev, &dyd, &xd, &g, o, &mut dw).unwrap();
        assert_close(
            &format!("conv grad weight {what}"),
            &down(&dw),
            &dw_cpu,
            1e-4,
        );

        let mut db_cpu = vec![0.0; o];
        c2d::conv2d_backward_bias(&dy, o, ncols, &mut db_cpu);
        let mut db = dev.zeros(o).unwrap();
        cuda::conv::conv2d_backward_bias(&dev, &dyd, o, ncols, &mut db).unwrap();
        assert_close(&format!("conv grad bias {what}"), &down(&db), &db_cpu, 1e-4);
    }
}

#[test]
fn batchnorm_training_and_evaluation_match_the_cpu() {
    let Some(dev) = gpu("batchnorm") else { return };
    let mut rng = Rng::seed(6);
    let (n, c, h, w) = (3, 4, 5, 6);
    let plane = h * w;
    let dims = [n, c, h, w];
    let x: Vec<f32> = values(&mut rng, n * c * plane, -1.0, 1.0)
        .iter()
        .map(|v| 2.0 * v + 0.5)
        .collect();
    let gamma = values(&mut rng, c, 0.5, 1.5);
    let beta = values(&mut rng, c, -0.5, 0.5);
    let gup = values(&mut rng, x.len(), -1.0, 1.0);
    let run_mean0 = values(&mut rng, c, -0.2, 0.2);
    let run_var0 = values(&mut rng, c, 0.5, 1.5);
    let (xd, gd, bd) = (up(&dev, &x), up(&dev, &gamma), up(&dev, &beta));

    let stats = cuda::batchnorm::batch_stats(&dev, &xd, c, plane)
        .unwrap()
        .to_vec()
        .unwrap();
    for (ch, &(m, v)) in cpu::batchnorm2d::batch_stats(&x, c, plane)
        .iter()
        .enumerate()
    {
        assert!(
            (stats[2 * ch] - m).abs() <= 1e-9 * (1.0 + m.abs()),
            "mean {ch}: {} vs {m}",
            stats[2 * ch]
        );
        assert!(
            (stats[2 * ch + 1] - v).abs() <= 1e-9 * (1.0 + v),
            "var {ch}: {} vs {v}",
            stats[2 * ch + 1]
        );
    }

    for training in [true, false] {
        let what = if training { "training" } else { "evaluation" };
        let mut rs = ops::batchnorm2d::RunningStats::new(c);
        rs.mean.data_mut().copy_from_slice(&run_mean0);
        rs.var.data_mut().copy_from_slice(&run_var0);
        let (y_cpu, grads) = cpu_op(
            &[(&x, &dims), (&gamma, &[c]), (&beta, &[c])],
            &gup,
            |tape, t| ops::batchnorm2d::batchnorm2d(tape, &t[0], &t[1], &t[2], &mut rs, training),
        );

        let (mut rm, mut rv) = (up(&dev, &run_mean0), up(&dev, &run_var0));
        let batch = if training {
            Some(cuda::batchnorm::batch_stats(&dev, &xd, c, plane).unwrap())
        } else {
            None
        };
        let cs = cuda::batchnorm::prepare_stats(
            &dev,
            batch.as_ref(),
            &mut rm,
            &mut rv,
            (rs.eps, rs.momentum),
            n * plane,
        )
        .unwrap();
        let y = cuda::batchnorm::batchnorm2d_forward(&dev, &xd, c, plane, &cs, &gd, &bd).unwrap();
        assert_close(
            &format!("batchnorm forward {what}"),
            &down(&y),
            &y_cpu,
            1e-4,
        );
        assert_close(
            &format!("running mean {what}"),
            &down(&rm),
            rs.mean.data(),
            1e-4,
        );
        assert_close(
            &format!("running var {what}"),
            &down(&rv),
            rs.var.data(),
            1e-4,
        );

        let (mut dgamma, mut dbeta) = (dev.zeros(c).unwrap(), dev.zeros(c).unwrap());
        let dx = cuda::batchnorm::batchnorm2d_backward(
            &dev,
            &up(&dev, &gup),
            &xd,
            (c, plane),
            &cs,
            &gd,
            training,
            true,
            &mut dgamma,
            &mut dbeta,
        )
        .unwrap()
        .unwrap();
        assert_close(
            &format!("batchnorm grad x {what}"),
            &down(&dx),
            grads[0].as_ref().unwrap(),
            1e-4,
        );
        assert_close(
            &format!("batchnorm grad gamma {what}"),
            &down(&dgamma),
            grads[1].as_ref().unwrap(),
            1e-4,
        );
        assert_close(
            &format!("batchnorm grad beta {what}"),
            &down(&dbeta),
            grads[2].as_ref().unwrap(),
            1e-4,
        );

        let (mean, rstd) = (down(&cs.mean), down(&cs.rstd));
        let mut fused_cpu = x.clone();
        cpu::batchnorm2d::batchnorm2d_relu_inplace(
            &mut fused_cpu,
            c,
            plane,
            &mean,
            &rstd,
            &gamma,
            &beta,
        );
        let mut fused = up(&dev, &x);
        cuda::batchnorm::batchnorm2d_relu_inplace(&dev, &mut fused, c, plane, &cs, &gd, &bd)
            .unwrap();
        assert_close(
            &format!("batchnorm + relu {what}"),
            &down(&fused),
            &fused_cpu,
            1e-4,
        );
    }
}

#[test]
fn max_pooling_with_argmax_matches_the_cpu() {
    let Some(dev) = gpu("maxpool") else { return };
    let mut rng = Rng::seed(7);
    use cpu::maxpool2d::{maxpool2d_backward, maxpool2d_forward};
    // (h, w), kernel, stride, padding
    let cases = [
        ((6, 8), (2, 2), (2, 2), (0, 0)),
        ((6, 5), (2, 1), (2, 1), (0, 0)),
        ((7, 9), (3, 3), (2, 2), (1, 1)),
        ((5, 5), (3, 3), (1, 1), (1, 1)),
        ((5, 7), (2, 2), (2, 2), (0, 0)),
        ((4, 6), (3, 2), (3, 2), (0, 0)),
    ];
    let planes = 6;
    for (hw, k, s, p) in cases {
        let g = ConvGeom::new((1, hw.0, hw.1), k, s, p).unwrap();
        let what = format!("{g:?}");
        // Quarter steps make ties; a NaN and a -inf in the first plane.
        let mut x: Vec<f32> = (0..planes * hw.0 * hw.1)
            .map(|_| (rng.range(-1.0, 1.0) * 4.0).round() / 4.0)
            .collect();
        x[1] = f32::NAN;
        x[2] = f32::NEG_INFINITY;
        let out = planes * g.ho * g.wo;
        let (mut y_cpu, mut a_cpu) = (vec![0.0; out], vec![0u32; out]);
        maxpool2d_forward(&x, &g, &mut y_cpu, Some(&mut a_cpu));
        let mut y = dev.zeros(out).unwrap();
        let mut a = dev.zeros::<u32>(out).unwrap();
        cuda::maxpool::maxpool2d_forward(&dev, &up(&dev, &x), &g, &mut y, Some(&mut a)).unwrap();
        assert_close(&format!("maxpool forward {what}"), &down(&y), &y_cpu, 0.0);
        assert_eq!(a.to_vec().unwrap(), a_cpu, "argmax {what}");
        let dy = values(&mut rng, out, -1.0, 1.0);
        let dx_cpu = maxpool2d_backward(&dy, &a_cpu, &g, planes);
        let dx = cuda::maxpool::maxpool2d_backward(&dev, &up(&dev, &dy), &a, &g, planes).unwrap();
        assert_close(
            &format!("maxpool backward {what}"),
            &down(&dx),
            &dx_cpu,
            1e-6,
        );
    }
}

#[test]
fn lstm_direction_forward_and_backward_match_the_cpu() {
    let Some(dev) = gpu("lstm") else { return };
    let mut rng = Rng::seed(8);
    use cpu::lstm::{lstm_backward, lstm_forward, LstmDims, LstmNeeds, LstmParams};
    let dims = LstmDims {
        steps: 7,
        batch: 4,
        input: 5,
        hidden: 6,
    };
    let lengths = [7, 3, 0, 5];
    let (g4, rows) = (4 * dims.hidden, dims.steps * dims.batch);
    let w_ih = values(&mut rng, g4 * dims.input, -0.5, 0.5);
    let w_hh = values(&mut rng, g4 * dims.hidden, -0.5, 0.5);
    let b_ih = values(&mut rng, g4, -0.5, 0.5);
    let b_hh = values(&mut rng, g4, -0.5, 0.5);
    let x = values(&mut rng, rows * dims.input, -1.0, 1.0);
    let dy = values(&mut rng, rows * dims.hidden, -1.0, 1.0);
    let p = LstmParams {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let (wid, whd, bid, bhd, xd, dyd) = (
        up(&dev, &w_ih),
        up(&dev, &w_hh),
        up(&dev, &b_ih),
        up(&dev, &b_hh),
        up(&dev, &x),
        up(&dev, &dy),
    );
    let gp = cuda::lstm::GpuLstmParams {
        w_ih: &wid,
        w_hh: &whd,
        b_ih: &bid,
        b_hh: &bhd,
    };
    let needs = LstmNeeds {
        x: true,
        w_ih: true,
        w_hh: true,
        bias: true,
    };
    for reverse in [false, true] {
        let what = if reverse { "reverse" } else { "forward" };
        let (out_cpu, cache_cpu) = lstm_forward(&x, p, dims, &lengths, reverse, true);
        let cache_cpu = cache_cpu.unwrap();
        let (out, cache) =
            cuda::lstm::lstm_forward(&dev, &xd, gp, dims, &lengths, reverse, true).unwrap();
        let cache = cache.unwrap();
        assert_close(&format!("lstm output {what}"), &down(&out), &out_cpu, 1e-3);
        assert_close(
            &format!("lstm gates {what}"),
            &down(&cache.gates),
            &cache_cpu.gates,
            1e-3,
        );
        assert_close(
            &format!("lstm c {what}"),
            &down(&cache.c),
            &cache_cpu.c,
            1e-3,
        );
        assert_close(
            &format!("lstm h_prev {what}"),
            &down(&cache.h_prev),
            &cache_cpu.h_prev,
            1e-3,
        );
        let (unsaved, none) =
            cuda::lstm::lstm_forward(&dev, &xd, gp, dims, &lengths, reverse, false).unwrap();
        assert!(none.is_none());
        assert_close(
            &format!("lstm output without cache {what}"),
            &down(&unsaved),
            &out_cpu,
            1e-3,
        );

        let grads_cpu = lstm_backward(&dy, &x, p, dims, &lengths, reverse, &cache_cpu, needs);
        let grads =
            cuda::lstm::lstm_backward(&dev, &dyd, &xd, gp, dims, &lengths, reverse, &cache, needs)
                .unwrap();
        assert_close(
            &format!("lstm grad x {what}"),
            &down(&grads.x.unwrap()),
            &grads_cpu.x.unwrap(),
            1e-3,
        );
        assert_close(
            &format!("lstm grad w_ih {what}"),
            &down(&grads.w_ih.unwrap()),
            &grads_cpu.w_ih.unwrap(),
            1e-3,
        );
        assert_close(
            &format!("lstm grad w_hh {what}"),
            &down(&grads.w_hh.unwrap()),
            &grads_cpu.w_hh.unwrap(),
            1e-3,
        );
        assert_close(
            &format!("lstm grad bias {what}"),
            &down(&grads.bias.unwrap()),
            &grads_cpu.bias.unwrap(),
            1e-3,
        );
    }
}

#[test]
fn ctc_loss_and_gradient_match_the_cpu() {
    let Some(dev) = gpu("ctc") else { return };
    let mut rng = Rng::seed(9);
    use cpu::ctc::{ctc_sample, SampleLogProbs};
    let (t, n, c) = (12, 6, 6);
    let dims = [t, n, c];
    let logits = values(&mut rng, t * n * c, -2.0, 2.0);
    let lp = cpu::softmax::log_softmax(&logits, c, 1.0);
    // Feasible, repeated labels, empty, infeasible (11 labels in 8 frames),
    // one frame, repeats needing blanks.
    let targets: Vec<Vec<usize>> = vec![
        vec![1, 2, 3],
        vec![1, 1],
        vec![],
        vec![2, 3, 2, 3, 4, 5, 1, 2, 3, 4, 5],
        vec![5],
        vec![3, 3, 3],
    ];
    let lengths = [12, 5, 7, 8, 1, 12];
    let lpd = up(&dev, &lp);
    let sample = cuda::ctc::ctc_loss(&dev, &lpd, dims, &targets, &lengths, 0, false, true).unwrap();
    let losses = sample.losses.to_vec().unwrap();
    let grad = sample.grad.as_ref().unwrap().to_vec().unwrap();
    for i in 0..n {
        let view = SampleLogProbs::new(&lp, dims, i, lengths[i]).unwrap();
        let want = ctc_sample(&view, &targets[i], 0, true).unwrap();
        let got = losses[i];
        assert!(
            (want.loss.is_infinite() && got == want.loss)
                || (got - want.loss).abs() <= 1e-3 * (1.0 + want.loss.abs()),
            "ctc loss of sample {i}: gpu {got} vs cpu {}",
            want.loss
        );
        let want_grad = want.grad.unwrap();
        for tt in 0..t {
            for k in 0..c {
                let g = grad[(tt * n + i) * c + k];
                let w = if tt < lengths[i] {
                    want_grad[tt * c + k]
                } else {
                    0.0
                };
                assert!(
                    (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
                    "ctc grad sample {i} t {tt} c {k}: gpu {g} vs cpu {w}"
                );
            }
        }
    }

    for zero_infinity in [false, true] {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("{reduction:?} zero_infinity {zero_infinity}");
            let per_sample = reduction == Reduction::None;
            let gup = values(&mut rng, if per_sample { n } else { 1 }, 0.5, 1.5);
            let opts = ops::ctc::CtcOptions {
                blank: 0,
                reduction,
                zero_infinity,
            };
            let (y_cpu, grads) = cpu_op(&[(&lp, &dims)], &gup, |tape, ts| {
                ops::ctc::ctc_loss(tape, &ts[0], &targets, &lengths, opts)
            });
            let factors: Vec<f64> = targets
                .iter()
                .map(|tg| {
                    if reduction == Reduction::Mean {
                        1.0 / (tg.len().max(1) as f64 * n as f64)
                    } else {
                        1.0
                    }
                })
                .collect();
            let s =
                cuda::ctc::ctc_loss(&dev, &lpd, dims, &targets, &lengths, 0, zero_infinity, true)
                    .unwrap();
            let y = cuda::ctc::ctc_reduce(&dev, &s.losses, &factors, per_sample).unwrap();
            assert_close(&format!("ctc value {what}"), &down(&y), &y_cpu, 1e-3);
            let g = cuda::ctc::ctc_backward(
                &dev,
                s.grad.as_ref().unwrap(),
                &factors,
                &up(&dev, &gup),
                per_sample,
                &lengths,
                dims,
            )
            .unwrap();
            assert_close(
                &format!("ctc grad {what}"),
                &down(&g),
                grads[0].as_ref().unwrap(),
                1e-3,
            );
        }
    }
}

#[test]
fn kl_divergence_cross_entropy_mse_and_soft_kd_match_the_cpu() {
    let Some(dev) = gpu("losses and kd") else {
        return;
    };
    let mut rng = Rng::seed(10);
    let (rows, k) = (10, 7);
    let lq = cpu::softmax::log_softmax(&values(&mut rng, rows * k, -3.0, 3.0), k, 1.0);
    let mut lp = cpu::softmax::log_softmax(&values(&mut rng, rows * k, -3.0, 3.0), k, 1.0);
    lp[0] = f32::NEG_INFINITY; // p = 0: the term and its gradients are 0
    let (lqd, lpd) = (up(&dev, &lq), up(&dev, &lp));
    let d = [rows, k];

    // KL divergence per row and averaged over rows.
    let gup = values(&mut rng, rows, -1.0, 1.0);
    let (y_cpu, grads) = cpu_op(&[(&lq, &d), (&lp, &d)], &gup, |tape, t| {
        ops::kl_div(tape, &t[0], &t[1], Reduction::None)
    });
    let per_row = cuda::kd::kl_div_rows(&dev, &lqd, &lpd, k).unwrap();
    assert_close("kl_div rows", &down(&per_row), &y_cpu, 1e-4);
    let (gq, gp) = cuda::kd::kl_div_backward(
        &dev,
        &lqd,
        &lpd,
        k,
        &up(&dev, &gup),
        Upstream::PerItem,
        [true, true],
    )
    .unwrap();
    assert_close(
        "kl_div grad q",
        &down(&gq.unwrap()),
        grads[0].as_ref().unwrap(),
        1e-4,
    );
    assert_close(
        "kl_div grad p",
        &down(&gp.unwrap()),
        grads[1].as_ref().unwrap(),
        1e-4,
    );
    let (y_cpu, grads) = cpu_op(&[(&lq, &d), (&lp, &d)], &[1.0], |tape, t| {
        ops::kl_div(tape, &t[0], &t[1], Reduction::Mean)
    });
    let mut mean = cuda::reduce::sum_all(&dev, &per_row).unwrap();
    cuda::elementwise::unary_in_place(&dev, Unary::Scale(1.0 / rows as f32), &mut mean).unwrap();
    assert_close("kl_div mean", &down(&mean), &y_cpu, 1e-4);
    let shared = Upstream::Shared {
        divisor: rows as f32,
    };
    let (gq, _) = cuda::kd::kl_div_backward(
        &dev,
        &lqd,
        &lpd,
        k,
        &up(&dev, &[1.0]),
        shared,
        [true, false],
    )
    .unwrap();
    assert_close(
        "kl_div mean grad q",
        &down(&gq.unwrap()),
        grads[0].as_ref().unwrap(),
        1e-4,
    );

    // Cross-entropy with label smoothing, per row and averaged.
    let logits = values(&mut rng, rows * k, -3.0, 3.0);
    let targets: Vec<usize> = (0..rows).map(|_| rng.below(k)).collect();
    let ls = cuda::softmax::log_softmax(&dev, &up(&dev, &logits), k, 1.0).unwrap();
    for eps in [0.0, 0.1] {
        let (y_cpu, grads) = cpu_op(&[(&logits, &d)], &gup, |tape, t| {
            ops::cross_entropy(tape, &t[0], &targets, eps, Reduction::None)
        });
        let per_row = cuda::loss::cross_entropy_rows(&dev, &ls, &targets, k, eps).unwrap();
        assert_close(
            &format!("cross_entropy eps {eps}"),
            &down(&per_row),
            &y_cpu,
            1e-4,
        );
        let g = cuda::loss::cross_entropy_backward(
            &dev,
            &ls,
            &targets,
            k,
            eps,
            &up(&dev, &gup),
            Upstream::PerItem,
        )
        .unwrap();
        assert_close(
            &format!("cross_entropy grad eps {eps}"),
            &down(&g),
            grads[0].as_ref().unwrap(),
            1e-4,
        );
        let (_, grads) = cpu_op(&[(&logits, &d)], &[1.0], |tape, t| {
            ops::cross_entropy(tape, &t[0], &targets, eps, Reduction::Mean)
        });
        let g = cuda::loss::cross_entropy_backward(
            &dev,
            &ls,
            &targets,
            k,
            eps,
            &up(&dev, &[1.0]),
            shared,
        )
        .unwrap();
        assert_close(
            &format!("cross_entropy mean grad eps {eps}"),
            &down(&g),
            grads[0].as_ref().unwrap(),
            1e-4,
        );
    }

    // Squared error, elementwise and averaged.
    let d3 = [3, 4, 5];
    let (a, b) = (
        values(&mut rng, 60, -1.0, 1.0),
        values(&mut rng, 60, -1.0, 1.0),
    );
    let gup = values(&mut rng, 60, -1.0, 1.0);
    let (y_cpu, grads) = cpu_op(&[(&a, &d3), (&b, &d3)], &gup, |tape, t| {
        ops::mse_loss(tape, &t[0], &t[1], Reduction::None)
    });
    let (diff, sq) = cuda::loss::mse_forward(&dev, &up(&dev, &a), &up(&dev, &b)).unwrap();
    assert_close("mse", &down(&sq), &y_cpu, 1e-4);
    let (ga, gb) = cuda::loss::mse_backward(
        &dev,
        &diff,
        &up(&dev, &gup),
        Upstream::PerItem,
        [true, true],
    )
    .unwrap();
    assert_close(
        "mse grad a",
        &down(&ga.unwrap()),
        grads[0].as_ref().unwrap(),
        1e-4,
    );
    assert_close(
        "mse grad b",
        &down(&gb.unwrap()),
        grads[1].as_ref().unwrap(),
        1e-4,
    );
    let (_, grads) = cpu_op(&[(&a, &d3), (&b, &d3)], &[1.0], |tape, t| {
        ops::mse_loss(tape, &t[0], &t[1], Reduction::Mean)
    });
    let (ga, _) = cuda::loss::mse_backward(
        &dev,
        &diff,
        &up(&dev, &[1.0]),
        Upstream::Shared { divisor: 60.0 },
        [true, false],
    )
    .unwrap();
    assert_close(
        "mse mean grad a",
        &down(&ga.unwrap()),
        grads[0].as_ref().unwrap(),
        1e-4,
    );

    // Frame-level soft KD at T = 4 composed from the GPU parts.
    let (steps, n, temp, lengths) = (5, 3, 4.0f32, [5usize, 2, 4]);
    let kd = [steps, n, k];
    let s = values(&mut rng, steps * n * k, -3.0, 3.0);
    let t = values(&mut rng, steps * n * k, -3.0, 3.0);
    let (y_cpu, grads) = cpu_op(&[(&s, &kd), (&t, &kd)], &[1.0], |tape, ts| {
        retort::distill::soft_kd(tape, &ts[0], &ts[1], &lengths, temp)
    });
    let frames: usize = lengths.iter().sum();
    let mask: Vec<f32> = (0..steps)
        .flat_map(|ti| lengths.iter().map(move |&l| if ti < l { 1.0 } else { 0.0 }))
        .collect();
    let factor = temp * temp / frames as f32;
    let lq = cuda::softmax::log_softmax(&dev, &up(&dev, &s), k, temp).unwrap();
    let lp = cuda::softmax::log_softmax(&dev, &up(&dev, &t), k, temp).unwrap();
    let per_frame = cuda::kd::kl_div_rows(&dev, &lq, &lp, k).unwrap();
    let fs = shape(&[steps, n]);
    let masked = cuda::elementwise::binary_forward(
        &dev,
        Binary::Mul,
        &per_frame,
        &fs,
        &up(&dev, &mask),
        &fs,
        &fs,
    )
    .unwrap();
    let mut value = cuda::reduce::sum_all(&dev, &masked).unwrap();
    cuda::elementwise::unary_in_place(&dev, Unary::Scale(factor), &mut value).unwrap();
    assert_close("soft_kd value", &down(&value), &y_cpu, 1e-4);
    let g_frames = up(&dev, &mask.iter().map(|m| m * factor).collect::<Vec<f32>>());
    let (gq, gp) = cuda::kd::kl_div_backward(
        &dev,
        &lq,
        &lp,
        k,
        &g_frames,
        Upstream::PerItem,
        [true, true],
    )
    .unwrap();
    let gs = cuda::softmax::log_softmax_backward(&dev, &lq, &gq.unwrap(), k, temp).unwrap();
    let gt = cuda::softmax::log_softmax_backward(&dev, &lp, &gp.unwrap(), k, temp).unwrap();
    assert_close(
        "soft_kd grad student",
        &down(&gs),
        grads[0].as_ref().unwrap(),
        1e-4,
    );
    assert_close(
        "soft_kd grad teacher",
        &down(&gt),
        grads[1].as_ref().unwrap(),
        1e-4,
    );
}

#[test]
fn fused_optimizer_updates_and_gradient_norm_match_the_cpu() {
    let Some(dev) = gpu("optim") else { return };
    let mut rng = Rng::seed(11);
    use retort::optim::{grad_norm, Optimizer, OptimizerConfig};
    use retort::Param;
    let sizes = [37usize, 5];
    let configs = [
        OptimizerConfig::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: false,
        },
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: true,
        },
        OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        OptimizerConfig::adamw(),
    ];
    let lr = 0.05;
    for config in configs {
        let what = format!("{config:?}");
        let init: Vec<Vec<f32>> = sizes
            .iter()
            .map(|&s| values(&mut rng, s, -1.0, 1.0))
            .collect();
        let mut params: Vec<Param> = init
            .iter()
            .zip(sizes)
            .map(|(v, s)| Param::new(Tensor::from_vec(v.clone(), &[s]).unwrap()))
            .collect();
        let mut opt = Optimizer::new(config.clone()).unwrap();
        let mut p_dev: Vec<Buf> = init.iter().map(|v| up(&dev, v)).collect();
        let mut m_dev: Vec<Buf> = sizes.iter().map(|&s| dev.zeros(s).unwrap()).collect();
        let mut v_dev: Vec<Buf> = sizes.iter().map(|&s| dev.zeros(s).unwrap()).collect();
        for step in 1..=3u64 {
            let g: Vec<Vec<f32>> = sizes
                .iter()
                .map(|&s| values(&mut rng, s, -1.0, 1.0))
                .collect();
            let mut tape = Tape::new();
            let mut terms = Vec::new();
            for (p, gv) in params.iter().zip(&g) {
                let gt = Tensor::from_vec(gv.clone(), p.dims()).unwrap();
                let prod = ops::mul_const(&mut tape, p.tensor(), &gt).unwrap();
                terms.push(ops::sum_all(&mut tape, &prod).unwrap());
            }
            let loss = ops::add(&mut tape, &terms[0], &terms[1]).unwrap();
            let grads = tape.backward(&loss).unwrap();
            if step == 1 {
                let want = grad_norm(&params.iter().collect::<Vec<_>>(), &grads);
                let gd: Vec<Buf> = g.iter().map(|v| up(&dev, v)).collect();
                let got = cuda::optim::grad_norm(&dev, &gd.iter().collect::<Vec<_>>()).unwrap();
                assert!(
                    (got - want).abs() <= 1e-5 * want,
                    "grad_norm: gpu {got} vs cpu {want}"
                );
            }
            opt.step(&mut params.iter_mut().collect::<Vec<_>>(), &grads, lr)
                .unwrap();
            for (i, gv) in g.iter().enumerate() {
                let gd = up(&dev, gv);
                match config {
                    OptimizerConfig::Sgd {
                        momentum,
                        weight_decay,
                        nesterov,
                    } => {
                        let h = cuda::optim::Sgd {
                            lr,
                            momentum,
                            weight_decay,
                            nesterov,
                        };
                        let buf = (momentum != 0.0).then_some(&mut m_dev[i]);
                        cuda::optim::sgd_update(&dev, h, &mut p_dev[i], &gd, buf, step == 1)
                            .unwrap();
                    }
                    OptimizerConfig::Adam {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    }
                    | OptimizerConfig::AdamW {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    } => {
                        let decoupled = matches!(config, OptimizerConfig::AdamW { .. });
                        let h = cuda::optim::Adam {
                            lr,
                            beta1,
                            beta2,
                            eps,
                            weight_decay,
                            decoupled,
                        };
                        cuda::optim::adam_update(
                            &dev,
                            h,
                            &mut p_dev[i],
                            &gd,
                            &mut m_dev[i],
                            &mut v_dev[i],
                            step,
                        )
                        .unwrap();
                    }
                }
            }
        }
        for (i, p) in params.iter().enumerate() {
            assert_close(
                &format!("{what} parameter {i}"),
                &down(&p_dev[i]),
                p.tensor().data(),
                1e-4,
            );
        }
    }
}

/// One small training-like step: products, convolution, normalisation,
/// pooling, softmax and an LSTM, forward and backward.
fn step(dev: &CudaDevice, rng: &mut Rng) {
    let g = ConvGeom::new((2, 8, 8), (3, 3), (1, 1), (1, 1)).unwrap();
    let (n, o) = (2, 4);
    let x = up(dev, &values(rng, n * g.in_len(), -1.0, 1.0));
    let w = up(dev, &values(rng, o * g.col_rows(), -0.5, 0.5));
    let mut y = dev.zeros(n * o * g.col_cols()).unwrap();
    cuda::conv::conv2d_forward(dev, &x, &g, &w, o, None, &mut y).unwrap();
    let mut dw = dev.zeros(w.len()).unwrap();
    cuda::conv::conv2d_backward_weight(dev, &y, &x, &g, o, &mut dw).unwrap();
    let mut dx = dev.zeros(x.len()).unwrap();
    cuda::conv::conv2d_backward_input(dev, &y, &g, &w, o, &mut dx).unwrap();
    let stats = cuda::batchnorm::batch_stats(dev, &y, o, 64).unwrap();
    let (mut rm, mut rv) = (dev.zeros(o).unwrap(), up(dev, &[1.0; 4]));
    let cs =
        cuda::batchnorm::prepare_stats(dev, Some(&stats), &mut rm, &mut rv, (1e-5, 0.1), n * 64)
            .unwrap();
    let gamma = up(dev, &[1.0; 4]);
    let bn = cuda::batchnorm::batchnorm2d_forward(dev, &y, o, 64, &cs, &gamma, &rm).unwrap();
    let pg = ConvGeom::new((1, 8, 8), (2, 2), (2, 2), (0, 0)).unwrap();
    let mut pooled = dev.zeros(n * o * 16).unwrap();
    let mut arg = dev.zeros::<u32>(n * o * 16).unwrap();
    cuda::maxpool::maxpool2d_forward(dev, &bn, &pg, &mut pooled, Some(&mut arg)).unwrap();
    let back = cuda::maxpool::maxpool2d_backward(dev, &pooled, &arg, &pg, n * o).unwrap();
    let sm = cuda::softmax::log_softmax(dev, &back, 8, 1.0).unwrap();
    let _ = cuda::softmax::log_softmax_backward(dev, &sm, &back, 8, 1.0).unwrap();
    use cpu::lstm::{LstmDims, LstmNeeds};
    let d = LstmDims {
        steps: 4,
        batch: 2,
        input: 3,
        hidden: 5,
    };
    let ws: Vec<Buf> = [20 * 3, 20 * 5, 20, 20]
        .iter()
        .map(|&l| up(dev, &values(rng, l, -0.5, 0.5)))
        .collect();
    let p = cuda::lstm::GpuLstmParams {
        w_ih: &ws[0],
        w_hh: &ws[1],
        b_ih: &ws[2],
        b_hh: &ws[3],
    };
    let xs = up(dev, &values(rng, 4 * 2 * 3, -1.0, 1.0));
    let (out, cache) = cuda::lstm::lstm_forward(dev, &xs, p, d, &[4, 2], true, true).unwrap();
    let needs = LstmNeeds {
        x: true,
        w_ih: true,
        w_hh: true,
        bias: true,
    };
    cuda::lstm::lstm_backward(dev, &out, &xs, p, d, &[4, 2], true, &cache.unwrap(), needs).unwrap();
    dev.synchronize().unwrap();
}

#[test]
fn a_repeated_step_allocates_no_device_memory() {
    if gpu("caching allocator").is_none() {
        return;
    }
    // A device of its own, so that no other test's work moves its counters.
    let dev = CudaDevice::new(0).unwrap();
    let mut rng = Rng::seed(12);
    step(&dev, &mut rng);
    let warm = dev.pool_stats();
    step(&dev, &mut rng);
    step(&dev, &mut rng);
    let after = dev.pool_stats();
    assert_eq!(
        after.device_allocations, warm.device_allocations,
        "{warm:?} then {after:?}"
    );
    assert!(
        after.cache_hits > warm.cache_hits,
        "{warm:?} then {after:?}"
    );
    assert_eq!(
        after.bytes_cached, after.bytes_reserved,
        "every buffer is back in the cache: {after:?}"
    );
    dev.trim_pool();
    assert_eq!(dev.pool_stats().bytes_reserved, 0);
}
