#!/usr/bin/env python3
"""Times the reference steps of ../../../shared/reference-models.md in PyTorch
(CPU) and crnn-s inference in onnxruntime, runs `retort bench --json` at the
same thread counts, and prints retort / peer for each row (as a speed ratio:
retort images/s divided by the peer's images/s, so > 1 means retort is faster).

Not part of CI; nothing in the Rust crate depends on it. See README.md.

    python benches/peers/peers.py [--retort PATH] [--threads 1,2] [--reps 7] [--warmup 2]

PATH defaults to $RETORT_BIN, then target/release/retort.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HEIGHT, WIDTH, SYMBOLS, K = 32, 128, 36, 37
TEMPERATURE = 4.0
LR = 0.01
SINGLE_FACTOR = 50  # batch-1 inference gets 50x the runs, as in `retort bench`

PRESETS = {
    # channels of b1..b4, LSTM hidden per direction, LSTM layers
    "crnn-t": ([32, 64, 128, 128], 128, 2),
    "crnn-s": ([8, 16, 32, 32], 48, 1),
}
POOLS = [(2, 2), (2, 2), None, (2, 1)]


class Crnn(nn.Module):
    """The CRNN of reference-models.md (same names as retort's checkpoints)."""

    def __init__(self, preset):
        super().__init__()
        channels, hidden, layers = PRESETS[preset]
        blocks = {}
        c_in = 1
        for i, c in enumerate(channels):
            blocks[f"b{i + 1}"] = nn.ModuleDict(
                {"conv": nn.Conv2d(c_in, c, 3, padding=1, bias=False), "bn": nn.BatchNorm2d(c)}
            )
            c_in = c
        self.cnn = nn.ModuleDict(blocks)
        self.rnn = nn.LSTM(c_in * 4, hidden, num_layers=layers, bidirectional=True)
        self.head = nn.Linear(2 * hidden, K)

    def forward(self, x):
        features = {}
        for i, pool in enumerate(POOLS):
            name = f"b{i + 1}"
            block = self.cnn[name]
            x = F.relu(block["bn"](block["conv"](x)))
            if pool is not None:
                x = F.max_pool2d(x, pool, pool)
            features[name] = x
        n, c, h, w = x.shape
        seq = x.permute(3, 0, 1, 2).reshape(w, n, c * h)
        r, _ = self.rnn(seq)
        return self.head(r), features


class Adaptor(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(32, 128, 1)

    def forward(self, x):
        return self.conv(x)


def batch(n, gen):
    images = torch.rand(n, 1, HEIGHT, WIDTH, generator=gen) * 2 - 1
    lengths = torch.randint(4, 13, (n,), generator=gen)
    targets = torch.cat([torch.randint(1, SYMBOLS + 1, (int(l),), generator=gen) for l in lengths])
    return images, targets, lengths


def ctc(logits, targets, target_lengths):
    t, n, _ = logits.shape
    input_lengths = torch.full((n,), t, dtype=torch.long)
    return F.ctc_loss(
        logits.log_softmax(-1), targets, input_lengths, target_lengths, blank=0,
        reduction="mean", zero_infinity=True,
    )


def wait_idle(limit_s=2.0):
    """Waits until this process's threads have gone quiet (under 2 ms of CPU in a
    20 ms window, at most `limit_s`): onnxruntime's pool spins some 100 ms
    after a run and OpenMP's a few ms, and on a 2-core machine a retort run
    started meanwhile shares its cores with them (batch 32 on 2 threads read
    6.6 ms right after onnxruntime against 4.1 ms alone)."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        c0 = time.process_time()
        time.sleep(0.02)
        if time.process_time() - c0 < 0.002:
            return


def timed(warmup, reps, f):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def greedy(logits):
    """Best path per sample: argmax, merge repeats, drop blanks."""
    best = logits.argmax(-1).T  # (N, T)
    out = []
    for row in np.asarray(best):
        prev, seq = -1, []
        for c in row:
            if c != prev and c != 0:
                seq.append(int(c))
            prev = c
        out.append(seq)
    return out


def torch_distill_step(n, gen):
    """The distill-step of reference-models.md in PyTorch, as a closure."""
    images, targets, tlen = batch(n, gen)
    teacher = Crnn("crnn-t").eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = Crnn("crnn-s").train()
    adaptor = Adaptor()
    opt = torch.optim.SGD(list(student.parameters()) + list(adaptor.parameters()), lr=LR, momentum=0.9)

    def distill_step():
        with torch.no_grad():
            t_logits, t_feat = teacher(images)
        opt.zero_grad(set_to_none=True)
        s_logits, s_feat = student(images)
        loss = ctc(s_logits, targets, tlen)
        log_q = F.log_softmax(s_logits / TEMPERATURE, -1).reshape(-1, K)
        log_p = F.log_softmax(t_logits / TEMPERATURE, -1).reshape(-1, K)
        kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
        hint = F.mse_loss(adaptor(s_feat["b4"]), t_feat["b4"])
        loss = loss + kl * TEMPERATURE**2 + hint
        loss.backward()
        opt.step()

    return distill_step


def torch_timers(n):
    """PyTorch's rows, built once: (row, batch) -> timer(warmup, reps) -> median seconds."""
    gen = torch.Generator().manual_seed(42)
    timers = {}

    images, targets, tlen = batch(n, gen)
    model = Crnn("crnn-t").train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)

    def train_step():
        opt.zero_grad(set_to_none=True)
        logits, _ = model(images)
        loss = ctc(logits, targets, tlen)
        loss.backward()
        opt.step()

    timers[("train-step crnn-t", n)] = lambda w, r: timed(w, r, train_step)

    distill_step = torch_distill_step(n, gen)
    timers[("distill-step", n)] = lambda w, r: timed(w, r, distill_step)

    student = Crnn("crnn-s").eval()
    for b in [1, n]:
        images_b, _, _ = batch(b, gen)

        def infer(images=images_b):
            with torch.inference_mode():
                logits, _ = student(images)
            greedy(logits.numpy())

        timers[("infer crnn-s", b)] = lambda w, r, f=infer: timed(w, r, f)
    return timers, student


def export_onnx(student, path):
    class Logits(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)[0]

    wrapper = Logits(student).eval()
    example = torch.zeros(1, 1, HEIGHT, WIDTH)
    kwargs = dict(
        input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "n"}, "logits": {1: "n"}}, opset_version=17,
    )
    try:
        torch.onnx.export(wrapper, (example,), path, dynamo=False, **kwargs)
    except TypeError:  # older torch without the `dynamo` argument
        torch.onnx.export(wrapper, (example,), path, **kwargs)


def ort_timers(onnx_path, threads, n):
    """onnxruntime's inference rows on one session: (row, batch) -> timer."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    timers = {}
    for b in [1, n]:
        images = rng.uniform(-1, 1, (b, 1, HEIGHT, WIDTH)).astype(np.float32)

        def infer(images=images):
            greedy(sess.run(None, {"images": images})[0])

        timers[("infer crnn-s", b)] = lambda w, r, f=infer: timed(w, r, f)
    return timers


# `retort bench --only` names of the rows, by (row, batch is 1).
RETORT_ROWS = {
    ("train-step crnn-t", False): "train",
    ("distill-step", False): "distill",
    ("infer crnn-s", True): "infer1",
    ("infer crnn-s", False): "infer-batch",
}


def retort_row(binary, threads, n, key, warmup, reps):
    """Median seconds of one row of `retort bench`, in a process of its own."""
    row, b = key
    cmd = [binary, "--threads", str(threads), "bench", "--json",
           "--only", RETORT_ROWS[(row, b == 1)],
           "--reps", str(reps), "--warmup", str(warmup)]
    if n != 32:
        cmd += ["--batch", str(n)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip():
            r = json.loads(line)
            if (r["row"], r["batch"]) == key:
                return r["median_ms"] / 1e3
    sys.exit(f"retort bench printed no row {key}: {out!r}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def peak_rss_mb(cmd):
    """Peak resident set size of the process `cmd` (and only it), in MB."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def rss_rows(args):
    """Peak RSS of a whole process that runs the distill-step (warm-up and
    timed runs) and nothing else, PyTorch beside retort, per thread count."""
    print(f"# {datetime.date.today()} | {cpu_model()} | torch {torch.__version__} | "
          f"peak RSS of a process running only distill-step, batch {args.batch}")
    print()
    print("| threads | PyTorch MB | retort MB | retort / PyTorch |")
    print("|---|---|---|---|")
    for threads in args.threads.split(","):
        torch_mb = peak_rss_mb([sys.executable, os.path.abspath(__file__), "--distill-only",
                                "--threads", threads, "--batch", str(args.batch),
                                "--reps", str(args.reps), "--warmup", str(args.warmup)])
        cmd = [args.retort, "--threads", threads, "bench", "--only", "distill",
               "--reps", str(args.reps), "--warmup", str(args.warmup)]
        if args.batch != 32:
            cmd += ["--batch", str(args.batch)]
        ours_mb = peak_rss_mb(cmd)
        print(f"| {threads} | {torch_mb:.0f} | {ours_mb:.0f} | {ours_mb / torch_mb:.2f} |")
        sys.stdout.flush()


def main():
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--retort", default=os.environ.get("RETORT_BIN", "target/release/retort"))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every pair of timings (a peer's row, then retort's, in turns) this many times; "
                         "print the medians and the median of the per-round ratios")
    ap.add_argument("--rss", action="store_true",
                    help="instead of timing, compare the peak RSS of a process running only the distill-step")
    ap.add_argument("--distill-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.distill_only:
        torch.set_num_threads(int(args.threads))
        torch.set_num_interop_threads(1)
        step = torch_distill_step(args.batch, torch.Generator().manual_seed(42))
        timed(args.warmup, args.reps, step)
        return
    if args.rss:
        rss_rows(args)
        return
    if not os.path.exists(args.retort):
        sys.exit(f"no retort binary at {args.retort}: cargo build --release, or pass --retort PATH")

    try:
        import onnxruntime  # noqa: F401
        have_ort = True
    except ImportError:
        print("onnxruntime is not installed (pip install onnxruntime onnx): skipping its rows", file=sys.stderr)
        have_ort = False

    torch.set_num_interop_threads(1)
    print(f"# {datetime.date.today()} | {cpu_model()} | {os.cpu_count()} logical CPUs | "
          f"torch {torch.__version__}" + (f" | onnxruntime {onnxruntime.__version__}" if have_ort else ""))
    print(f"# median of {args.reps} runs after {args.warmup} warm-up(s) "
          f"({SINGLE_FACTOR}x for batch 1); {args.rounds} round(s), each timing a peer's row and retort's "
          f"back to back (in turns which first); medians over rounds; "
          f"ratio = retort images/s / peer images/s (> 1: retort faster), median of the per-round ratios")
    print()
    header = f"| threads | row | batch | peer | peer ms | peer img/s | retort ms | retort img/s | retort / peer |"
    print(header)
    print("|" + "---|" * 9)
    tmp = tempfile.mkdtemp(prefix="retort-peers-")
    onnx_path = os.path.join(tmp, "crnn-s.onnx")
    exported = False
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        torch_rows, student = torch_timers(args.batch)
        peers = [("pytorch", torch_rows)]
        if have_ort:
            if not exported:
                export_onnx(student, onnx_path)
                exported = True
            peers.append(("onnxruntime", ort_timers(onnx_path, threads, args.batch)))
        # Each ratio's two timings run one right after the other (the peer
        # first in even rounds, retort first in odd ones), so that both see
        # the same moment of a shared machine: a retort run per peer and row.
        pairs = {(name, key): [] for name, t in peers for key in t}
        for r in range(args.rounds):
            for name, t in peers:
                for key, peer_timer in t.items():
                    w, n_reps = ((args.warmup * SINGLE_FACTOR, args.reps * SINGLE_FACTOR)
                                 if key[1] == 1 else (args.warmup, args.reps))
                    def ours():
                        wait_idle()
                        return retort_row(args.retort, threads, args.batch, key, args.warmup, args.reps)

                    def theirs():
                        wait_idle()
                        return peer_timer(w, n_reps)

                    if r % 2 == 0:
                        peer_s = theirs()
                        mine = ours()
                    else:
                        mine = ours()
                        peer_s = theirs()
                    pairs[(name, key)].append((peer_s, mine))
        for (name, (row, b)), timings in pairs.items():
            peer_s = statistics.median(x for x, _ in timings)
            mine = statistics.median(y for _, y in timings)
            ratio = statistics.median(x / y for x, y in timings)
            print(f"| {threads} | {row} | {b} | {name} | {peer_s * 1e3:.2f} | {b / peer_s:.1f} | "
                  f"{mine * 1e3:.2f} | {b / mine:.1f} | {ratio:.2f} |")
        sys.stdout.flush()

if __name__ == "__main__":
    main()
