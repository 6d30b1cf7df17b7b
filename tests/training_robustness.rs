//! The trainer under interruption, large data and small adapters: checkpoints and bit-identical
//! resumption (after injected device loss and out-of-memory faults), determinism, shard folders
//! streamed in bounded GPU blocks (equal, bit for bit, to training on the same rows in memory),
//! batches split into micro-batches with accumulated gradients under a small binding limit (the
//! same optimization as the whole batch), and damaged checkpoints refused cleanly.

mod common;
use common::*;
use gkl_gpu::data::InvalidPolicy;
use gkl_gpu::io::{write_npy_f64, write_npz, write_npz_compressed, NpyData};
use gkl_gpu::kernels::Activation;
use gkl_gpu::models::flow::{FlowConfig, FlowKind};
use gkl_gpu::runtime::{AdapterOptions, GpuContext, GpuError};
use gkl_gpu::training::npe::{
    train, CheckpointConfig, Fault, FaultKind, NpeSettings, TrainOptions, TrainOutcome,
};
use gkl_gpu::training::{
    recover_run_dir, Checkpoint, Method, ShardStream, TrainError, TrainSource,
};
use gkl_tasks::Prior;
use rand::Rng;
use rand_distr::StandardNormal;
use std::path::Path;

fn prior() -> Prior {
    Prior::from_json(r#"{"type": "gaussian", "mean": [0, 0], "cov": [[1, 0], [0, 1]]}"#).unwrap()
}

/// θ ~ N(0, I₂), x = θ + 0.5·ε.
fn data(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut g = rng(seed);
    let theta: Vec<f64> = (0..2 * n).map(|_| g.sample(StandardNormal)).collect();
    let x = theta
        .iter()
        .map(|t| t + 0.5 * g.sample::<f64, _>(StandardNormal))
        .collect();
    (theta, x)
}

fn settings(method: Method, epochs: usize) -> NpeSettings {
    NpeSettings {
        method,
        ratio: Some(gkl_gpu::models::mlp::MlpConfig {
            in_dim: 0,
            out_dim: 1,
            hidden: 16,
            blocks: 1,
            act: Activation::Relu,
            residual: true,
        }),
        contrastive: 2,
        base_epochs: if method == Method::Hybrid { 2 } else { 0 },
        base_gradient: Default::default(),
        support_mask: false,
        flow: FlowConfig {
            act: Activation::Relu,
            transforms: 2,
            hidden: 16,
            ..FlowConfig::new(FlowKind::Maf, 0, 0)
        },
        embedding: None,
        batch_size: 64,
        lr: 2e-3,
        max_epochs: epochs,
        patience: 100,
        validation_fraction: 0.1,
        clip_norm: 5.0,
        weight_decay: 0.0,
        lr_patience: 0,
        lr_factor: 0.5,
        lr_restore_best: false,
        seed: 11,
        unconstrained: false,
    }
}

fn scratch(name: &str) -> common::Scratch {
    common::scratch("robust", name)
}

fn run(
    ctx: &GpuContext,
    src: TrainSource<'_>,
    s: &NpeSettings,
    opts: TrainOptions,
) -> Result<TrainOutcome, TrainError> {
    train(ctx, &prior(), src, s, None, opts, &mut |_| {}, &mut |_| {})
}

fn mem<'a>(t: &'a [f64], x: &'a [f64]) -> TrainSource<'a> {
    TrainSource::Memory {
        theta: t,
        x,
        dim_x: 2,
    }
}

fn ck(dir: &Path, every: usize) -> Option<CheckpointConfig> {
    Some(CheckpointConfig {
        run_dir: dir.to_path_buf(),
        every,
        cli: None,
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn losses(o: &TrainOutcome) -> Vec<(u64, u64)> {
    o.history
        .iter()
        .map(|m| (m.train_loss.to_bits(), m.val_loss.to_bits()))
        .collect()
}

/// Interrupt at `fault`, resume from the checkpoint, and compare with an uninterrupted run
/// (training rows in blocks of at most `block` bytes).
fn interrupted_then_resumed(
    ctx_fault: &GpuContext,
    method: Method,
    fault: Fault,
    every: usize,
    expect_saved: usize,
    block: Option<u64>,
) {
    let (t, x) = data(1200, 5);
    let s = settings(method, 6);
    let tag = format!("{method:?}-{:?}", fault.kind);
    let whole = run(
        ctx(),
        mem(&t, &x),
        &s,
        TrainOptions {
            checkpoint: ck(&scratch(&format!("{tag}-whole")), every),
            block_bytes: block,
            ..Default::default()
        },
    )
    .unwrap();
    if let Some(b) = block {
        assert!(
            whole.blocks > 1,
            "{b} bytes per block: {} blocks",
            whole.blocks
        );
    }
    let dir = scratch(&format!("{tag}-cut"));
    let err = run(
        ctx_fault,
        mem(&t, &x),
        &s,
        TrainOptions {
            checkpoint: ck(&dir, every),
            fault: Some(fault),
            block_bytes: block,
            ..Default::default()
        },
    )
    .err()
    .expect("the injected fault stops the run");
    let text = err.to_string();
    match &err {
        TrainError::Interrupted {
            epoch,
            saved: Some(saved),
            ..
        } => {
            assert_eq!(*epoch, fault.epoch, "{text}");
            assert_eq!(saved.epoch, expect_saved, "{text}");
        }
        other => panic!("expected an interruption with a saved state, got: {other}"),
    }
    match fault.kind {
        FaultKind::DeviceLost => {
            assert!(matches!(err.gpu(), Some(GpuError::DeviceLost(_))), "{text}")
        }
        FaultKind::OutOfMemory => assert!(
            matches!(err.gpu(), Some(GpuError::OutOfMemory { .. })),
            "{text}"
        ),
    }
    assert!(
        text.contains("--resume") && text.contains(&format!("after epoch {expect_saved}")),
        "{text}"
    );
    let cp = Checkpoint::load(&Checkpoint::dir_of(&dir)).unwrap();
    assert_eq!(cp.state.epoch, expect_saved);
    let resumed = run(
        ctx(),
        mem(&t, &x),
        &s,
        TrainOptions {
            checkpoint: ck(&dir, every),
            resume: Some(cp),
            block_bytes: block,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(resumed.resumed_after, Some(expect_saved));
    assert_eq!(resumed.history.len(), 6);
    assert_eq!(
        losses(&resumed),
        losses(&whole),
        "{tag}: the metrics of the resumed run differ"
    );
    assert_eq!(
        bits(&resumed.model.params),
        bits(&whole.model.params),
        "{tag}: the resumed model differs"
    );
    assert_eq!(resumed.best_epoch, whole.best_epoch);
    // The final checkpoint equals the uninterrupted run's, too.
    let end = Checkpoint::load(&Checkpoint::dir_of(&dir)).unwrap();
    assert_eq!(end.state.epoch, 6);
    assert_eq!(bits(&end.best), bits(&whole.model.params));
}

#[test]
fn a_lost_device_leaves_a_checkpoint_and_the_resumed_run_is_bit_identical() {
    // Injected loss marks the context lost for good: use a device of its own.
    let own = GpuContext::new(&AdapterOptions::default().with_env().unwrap()).unwrap();
    interrupted_then_resumed(
        &own,
        Method::Npe,
        Fault {
            kind: FaultKind::DeviceLost,
            epoch: 5,
        },
        2,
        4,
        None,
    );
}

#[test]
fn out_of_memory_saves_the_last_good_epoch_even_between_checkpoints() {
    // Checkpoints only at the end (every = 0): the fault itself writes epoch 2's state.
    interrupted_then_resumed(
        ctx(),
        Method::Npe,
        Fault {
            kind: FaultKind::OutOfMemory,
            epoch: 3,
        },
        0,
        2,
        None,
    );
}

#[test]
fn ratio_and_hybrid_runs_resume_bit_identically() {
    // Hybrid: the contrastive draws come from a Philox stream keyed by Adam's step counter,
    // which the checkpoint restores; epoch 3 is the first with the ratio term. Both in several
    // blocks (1080 training rows, 375 per block): every epoch's block order and rotation are
    // drawn again from (seed, epoch) on resuming.
    interrupted_then_resumed(
        ctx(),
        Method::Hybrid,
        Fault {
            kind: FaultKind::OutOfMemory,
            epoch: 4,
        },
        0,
        3,
        Some(12_000),
    );
    interrupted_then_resumed(
        ctx(),
        Method::Ratio,
        Fault {
            kind: FaultKind::OutOfMemory,
            epoch: 3,
        },
        2,
        2,
        Some(12_000),
    );
}

#[test]
fn same_seed_data_and_settings_give_the_same_bits_and_another_seed_does_not() {
    let (t, x) = data(1500, 6);
    let s = settings(Method::Npe, 3);
    let a = run(ctx(), mem(&t, &x), &s, TrainOptions::default()).unwrap();
    let b = run(ctx(), mem(&t, &x), &s, TrainOptions::default()).unwrap();
    assert_eq!(bits(&a.model.params), bits(&b.model.params));
    assert_eq!(losses(&a), losses(&b));
    let c = run(
        ctx(),
        mem(&t, &x),
        &NpeSettings { seed: 12, ..s },
        TrainOptions::default(),
    )
    .unwrap();
    assert_ne!(bits(&a.model.params), bits(&c.model.params));
}

/// How a shard is stored.
#[derive(Clone, Copy, Debug)]
enum Format {
    Npz,
    NpzDeflated,
    NpyPair,
    /// Shards alternate between the three.
    Mixed,
}

/// Writes the rows as `parts` shards into `dir`.
fn write_shards_as(dir: &Path, t: &[f64], x: &[f64], parts: usize, format: Format) {
    let n = t.len() / 2;
    for i in 0..parts {
        let (lo, hi) = (i * n / parts, (i + 1) * n / parts);
        let f = match format {
            Format::Mixed => [Format::Npz, Format::NpyPair, Format::NpzDeflated][i % 3],
            f => f,
        };
        let (th, xs) = (&t[2 * lo..2 * hi], &x[2 * lo..2 * hi]);
        let entries = [
            ("theta", &[hi - lo, 2][..], NpyData::F64(th)),
            ("x", &[hi - lo, 2][..], NpyData::F64(xs)),
        ];
        let stem = format!("shard-{i:05}-of-{parts:05}");
        match f {
            Format::Npz => write_npz(dir.join(format!("{stem}.npz")), &entries).unwrap(),
            Format::NpzDeflated => {
                write_npz_compressed(dir.join(format!("{stem}.npz")), &entries).unwrap()
            }
            _ => {
                write_npy_f64(dir.join(format!("{stem}-theta.npy")), &[hi - lo, 2], th).unwrap();
                write_npy_f64(dir.join(format!("{stem}-x.npy")), &[hi - lo, 2], xs).unwrap();
            }
        }
    }
}

/// Writes the rows as `parts` stored .npz shards.
fn write_shards(dir: &Path, t: &[f64], x: &[f64], parts: usize) {
    write_shards_as(dir, t, x, parts, Format::Npz)
}

#[test]
fn streamed_shards_in_small_blocks_train_exactly_like_the_same_rows_in_memory() {
    let (t, x) = data(2000, 7);
    let s = settings(Method::Npe, 3);
    // 1800 training rows of 32 bytes (θ and x padded to 4 floats each) in blocks of ≤ 16 000 bytes;
    // every epoch visits the 4 blocks in its own order, starting at its own row.
    let block = Some(16_000);
    let in_memory = run(
        ctx(),
        mem(&t, &x),
        &s,
        TrainOptions {
            block_bytes: block,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(in_memory.blocks, 4, "1800 rows in blocks of at most 500");
    let mut stream = None;
    // Blocks start mid-shard: .npy shards are read from a seek, .npz members decompressed
    // past the rows before.
    for format in [Format::Npz, Format::NpzDeflated, Format::NpyPair] {
        let dir = scratch(&format!("shards-{format:?}"));
        write_shards_as(&dir, &t, &x, 3, format);
        let st = ShardStream::open(&dir, &prior(), "prior", InvalidPolicy::Drop).unwrap();
        let streamed = run(
            ctx(),
            TrainSource::Shards(&st),
            &s,
            TrainOptions {
                block_bytes: block,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(streamed.blocks, 4);
        let scan = streamed.scan.as_ref().unwrap();
        assert_eq!(
            (scan.shards, scan.rows_read, scan.rows_train, scan.rows_val),
            (3, 2000, 1800, 200)
        );
        assert_eq!(
            bits(&streamed.model.params),
            bits(&in_memory.model.params),
            "{format:?}"
        );
        assert_eq!(losses(&streamed), losses(&in_memory), "{format:?}");
        let (a, b) = (&streamed.model.preprocess, &in_memory.model.preprocess);
        assert_eq!(
            (&a.theta, &a.x),
            (&b.theta, &b.x),
            "the z-scores of the scan"
        );
        // The shards' directory must outlive the stream that reads them.
        stream = Some((st, dir));
    }
    let (stream, _dir) = stream.unwrap();
    // One block instead of four: still trains (a different row order, so different bits).
    let one = run(
        ctx(),
        TrainSource::Shards(&stream),
        &s,
        TrainOptions::default(),
    )
    .unwrap();
    assert_eq!(one.blocks, 1);
    assert!(one.history.iter().all(|m| m.val_loss.is_finite()));
}

#[test]
fn streamed_shards_drop_and_count_invalid_rows_and_resume_bit_identically() {
    let (t, mut x) = data(1500, 8);
    for r in [3, 700, 1499] {
        x[2 * r + 1] = f64::NAN;
    }
    x[2 * 900] = f64::INFINITY;
    let dir = scratch("shards-nan");
    write_shards(&dir, &t, &x, 4);
    let stream = ShardStream::open(&dir, &prior(), "prior", InvalidPolicy::Drop).unwrap();
    let s = settings(Method::Npe, 4);
    let block = Some(10_000);
    let run_dir = scratch("shards-nan-run");
    let whole = run(
        ctx(),
        TrainSource::Shards(&stream),
        &s,
        TrainOptions {
            block_bytes: block,
            ..Default::default()
        },
    )
    .unwrap();
    let scan = whole.scan.as_ref().unwrap();
    assert_eq!(
        (scan.invalid.rows_with_nan, scan.invalid.rows_with_inf),
        (3, 1)
    );
    assert_eq!(scan.rows_train + scan.rows_val, 1496);
    let cut = run(
        ctx(),
        TrainSource::Shards(&stream),
        &s,
        TrainOptions {
            block_bytes: block,
            checkpoint: ck(&run_dir, 1),
            fault: Some(Fault {
                kind: FaultKind::OutOfMemory,
                epoch: 3,
            }),
            ..Default::default()
        },
    );
    assert!(matches!(cut, Err(TrainError::Interrupted { .. })));
    let cp = Checkpoint::load(&Checkpoint::dir_of(&run_dir)).unwrap();
    let resumed = run(
        ctx(),
        TrainSource::Shards(&stream),
        &s,
        TrainOptions {
            block_bytes: block,
            resume: Some(cp),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(bits(&resumed.model.params), bits(&whole.model.params));
    // Under --invalid error the first bad shard stops the run with its file named.
    let strict = ShardStream::open(&dir, &prior(), "prior", InvalidPolicy::Error).unwrap();
    let e = run(
        ctx(),
        TrainSource::Shards(&strict),
        &s,
        TrainOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("shard-00000-of-00004.npz") && e.contains("--invalid error"),
        "{e}"
    );
}

#[test]
fn streamed_blocks_hold_exactly_the_rows_their_epoch_plan_names() {
    // Shards of every format with invalid rows (dropped) and validation rows (skipped): each
    // streamed block must be exactly the training rows its runs name, in that order, however
    // the epoch rotates and orders the blocks.
    use gkl_gpu::training::source::{
        block_bounds, epoch_blocks, epoch_rng, pack_rows, scan, stream_blocks,
    };
    let (t, mut x) = data(1300, 15);
    for r in [0, 1, 2, 399, 400, 650, 1299] {
        x[2 * r] = if r % 2 == 0 {
            f64::NAN
        } else {
            f64::NEG_INFINITY
        };
    }
    let dir = scratch("blocks-exact");
    write_shards_as(&dir, &t, &x, 5, Format::Mixed);
    let stream = ShardStream::open(&dir, &prior(), "prior", InvalidPolicy::Drop).unwrap();
    let src = TrainSource::Shards(&stream);
    let sc = scan(&src, &prior(), false, 0.1, 11).unwrap();
    assert_eq!(sc.val_index.len(), 130);
    // The training rows, by brute force: neither validation nor invalid, in source order.
    let keep: Vec<usize> = (0..1300)
        .filter(|r| sc.val_index.binary_search(r).is_err())
        .filter(|&r| x[2 * r..2 * r + 2].iter().all(|v| v.is_finite()))
        .collect();
    assert_eq!(keep.len(), sc.n_train);
    assert!(!sc.dropped.is_empty());
    let rows = |v: &[f64]| {
        keep.iter()
            .flat_map(|&r| v[2 * r..2 * r + 2].to_vec())
            .collect::<Vec<f64>>()
    };
    let (pt, px) = pack_rows(&sc.pre, &rows(&t), &rows(&x), 2, 2);
    let bounds = block_bounds(sc.n_train, 200);
    for epoch in 1..4 {
        let plan = epoch_blocks(&bounds, &mut epoch_rng(11, epoch));
        let rx = stream_blocks(
            stream.clone(),
            sc.val_index.clone(),
            sc.dropped.clone(),
            sc.pre.clone(),
            plan.clone(),
        );
        for runs in &plan {
            let b = rx.recv().unwrap().unwrap();
            let want_t: Vec<f32> = runs
                .iter()
                .flat_map(|r| pt[4 * r.start..4 * r.end].to_vec())
                .collect();
            let want_x: Vec<f32> = runs
                .iter()
                .flat_map(|r| px[4 * r.start..4 * r.end].to_vec())
                .collect();
            assert_eq!(b.rows, want_t.len() / 4);
            assert!(
                b.theta == want_t && b.x == want_x,
                "epoch {epoch}: block {runs:?} holds other rows"
            );
        }
        assert!(rx.recv().is_err(), "nothing after the last block");
    }
}

#[test]
fn resuming_with_other_settings_or_other_data_is_refused() {
    let (t, x) = data(800, 9);
    let s = settings(Method::Npe, 2);
    let dir = scratch("refuse");
    run(
        ctx(),
        mem(&t, &x),
        &s,
        TrainOptions {
            checkpoint: ck(&dir, 1),
            ..Default::default()
        },
    )
    .unwrap();
    let load = || Some(Checkpoint::load(&Checkpoint::dir_of(&dir)).unwrap());
    let other = NpeSettings {
        lr: 1e-3,
        ..s.clone()
    };
    let e = run(
        ctx(),
        mem(&t, &x),
        &other,
        TrainOptions {
            checkpoint: ck(&dir, 1),
            resume: load(),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("settings differ"), "{e}");
    let (t2, x2) = data(800, 10);
    let e = run(
        ctx(),
        mem(&t2, &x2),
        &s,
        TrainOptions {
            checkpoint: ck(&dir, 1),
            resume: load(),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("data differ"), "{e}");
    // More epochs may be asked for: the run continues from epoch 2.
    let more = run(
        ctx(),
        mem(&t, &x),
        &NpeSettings { max_epochs: 4, ..s },
        TrainOptions {
            checkpoint: ck(&dir, 1),
            resume: load(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((more.resumed_after, more.history.len()), (Some(2), 4));
}

/// Trains under a binding limit of `limit` bytes (None: the adapter's own), with the block bound
/// at 24 000 bytes in any case (so that the blocks do not depend on the limit) and a final
/// checkpoint in `run`; returns the outcome, the checkpoint and the notices.
fn limited(
    limit: Option<u64>,
    t: &[f64],
    x: &[f64],
    s: &NpeSettings,
    run: &Path,
    resume: Option<Checkpoint>,
) -> (TrainOutcome, Checkpoint, Vec<String>) {
    let mut c = ctx().clone();
    if let Some(l) = limit {
        c.limits.max_storage_buffer_binding_size = l;
    }
    let mut notices = vec![];
    let out = train(
        &c,
        &prior(),
        mem(t, x),
        s,
        None,
        TrainOptions {
            block_bytes: Some(24_000),
            checkpoint: ck(run, 0),
            resume,
            ..Default::default()
        },
        &mut |_| {},
        &mut |n| notices.push(n.to_string()),
    )
    .unwrap();
    let cp = Checkpoint::load(&Checkpoint::dir_of(run)).unwrap();
    (out, cp, notices)
}

/// max |a − b| / max |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let d = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    d / scale
}

#[test]
fn a_batch_too_large_for_the_binding_limit_is_split_into_micro_batches_that_train_like_the_whole_batch(
) {
    // 900 training rows in 2 blocks of 450 (24 000-byte bound) for every run. Under a 24 000-byte
    // binding limit the flow's tape (or the ratio net's activations) of a batch of 250 or 256
    // rows does not fit: the batch is processed in micro-batches whose gradients are summed,
    // with one optimizer step per batch. The models, and Adam's moments (which see the gradient's
    // scale), must equal the unsplit run's up to float summation order.
    let (t, x) = data(1000, 12);
    let limit = 24_000;
    // (method, batch, micro-batches, rows of each, rows of the last)
    for (method, batch, parts, rows, last) in [
        (Method::Npe, 256, 4, 64, 64),
        (Method::Npe, 250, 4, 63, 61),
        (Method::Ratio, 256, 3, 86, 84),
        (Method::Hybrid, 250, 4, 63, 61),
    ] {
        let tag = format!("{method:?}-{batch}");
        let s = NpeSettings {
            batch_size: batch,
            ..settings(method, 4)
        };
        let (whole, wck, wn) = limited(
            None,
            &t,
            &x,
            &s,
            &scratch(&format!("split-{tag}-whole")),
            None,
        );
        let split_dir = scratch(&format!("split-{tag}-split"));
        let (split, sck, sn) = limited(Some(limit), &t, &x, &s, &split_dir, None);
        assert_eq!((whole.micro_batches, whole.batch_size), (1, batch), "{tag}");
        assert_eq!(
            (split.micro_batches, split.batch_size),
            (parts, batch),
            "{tag}"
        );
        assert_eq!((split.blocks, whole.blocks), (2, 2), "{tag}");
        assert!(
            !wn.iter().any(|n| n.contains("micro-batches")),
            "{tag}: {wn:?}"
        );
        let tail = if last < rows {
            format!(" (the last {last})")
        } else {
            String::new()
        };
        assert!(
            sn.iter().any(
                |n| n.contains(&format!("batch size {batch} needs buffer '"))
                    && n.contains("largest binding (24000 bytes)")
                    && n.contains(&format!(
                        "{parts} micro-batches of {rows} rows{tail} and sums their gradients"
                    ))
            ),
            "{tag}: {sn:?}"
        );
        assert_eq!(
            (
                sck.state.batch_size,
                sck.state.micro_batches,
                sck.adam_state[0]
            ),
            (batch, parts, wck.adam_state[0]),
            "{tag}: one optimizer step per batch"
        );
        assert_eq!(split.best_epoch, whole.best_epoch, "{tag}");
        for (what, a, b, tol) in [
            ("model", &split.model.params, &whole.model.params, 1e-5),
            ("last parameters", &sck.params, &wck.params, 1e-5),
            ("Adam m", &sck.adam_m, &wck.adam_m, 1e-4),
            ("Adam v", &sck.adam_v, &wck.adam_v, 1e-4),
        ] {
            let r = rel_diff(a, b);
            eprintln!("{tag}: {what} differs by {r:.2e} (relative to its largest entry)");
            assert!(
                r < tol,
                "{tag}: split and whole-batch {what} differ by {r:.2e}"
            );
        }
        // The gradient norm of the last step (Adam's state word 2): the micro-batch gradients
        // sum to the whole batch's mean gradient, not to a multiple of it.
        let (gs, gw) = (
            f32::from_bits(sck.adam_state[2]),
            f32::from_bits(wck.adam_state[2]),
        );
        assert!(
            (gs - gw).abs() <= 1e-4 * gw,
            "{tag}: gradient norm {gs} vs {gw}"
        );
        for (a, b) in split.history.iter().zip(&whole.history) {
            assert!(
                (a.train_loss - b.train_loss).abs() <= 1e-5 * b.train_loss.abs().max(1.0),
                "{tag}: {a:?} vs {b:?}"
            );
        }
        if method == Method::Npe && batch == 256 {
            // Not a smaller batch: batch 64 (more steps, other gradients) trains otherwise.
            let s64 = NpeSettings {
                batch_size: 64,
                ..s.clone()
            };
            let (small, _, _) = limited(None, &t, &x, &s64, &scratch("split-b64"), None);
            let r = rel_diff(&small.model.params, &whole.model.params);
            assert!(r > 1e-2, "batch 64 vs 256 differ by only {r:.2e}");
            // The same limit with room for the batch: no split, no notice.
            let (fits, _, n) = limited(
                Some(limit),
                &t,
                &x,
                &s64,
                &scratch("split-b64-limited"),
                None,
            );
            assert_eq!(fits.micro_batches, 1);
            assert!(!n.iter().any(|n| n.contains("micro-batches")), "{n:?}");
            // Resuming the split run on an adapter that needs no split: same optimization, and
            // a notice that the bits will differ.
            let more = NpeSettings {
                max_epochs: 5,
                ..s.clone()
            };
            let (resumed, _, n) = limited(None, &t, &x, &more, &split_dir, Some(sck.clone()));
            assert_eq!((resumed.resumed_after, resumed.micro_batches), (Some(4), 1));
            assert!(
                n.iter()
                    .any(|n| n.contains("split each batch into 4 micro-batches")),
                "{n:?}"
            );
        }
    }
}

#[test]
fn damaged_checkpoints_are_refused_with_a_message_and_interrupted_writes_are_tidied() {
    let (t, x) = data(600, 13);
    let s = settings(Method::Npe, 1);
    let dir = scratch("damaged");
    run(
        ctx(),
        mem(&t, &x),
        &s,
        TrainOptions {
            checkpoint: ck(&dir, 1),
            ..Default::default()
        },
    )
    .unwrap();
    let cdir = Checkpoint::dir_of(&dir);
    let good = std::fs::read(cdir.join("state.json")).unwrap();
    for cut in [0, 1, good.len() / 2, good.len() - 2] {
        std::fs::write(cdir.join("state.json"), &good[..cut]).unwrap();
        let e = Checkpoint::load(&cdir)
            .expect_err("truncated state.json")
            .to_string();
        assert!(e.contains("state.json"), "{e}");
    }
    std::fs::write(cdir.join("state.json"), &good).unwrap();
    let tensors = std::fs::read(cdir.join("tensors.safetensors")).unwrap();
    std::fs::write(
        cdir.join("tensors.safetensors"),
        &tensors[..tensors.len() - 8],
    )
    .unwrap();
    assert!(Checkpoint::load(&cdir).is_err());
    std::fs::write(cdir.join("tensors.safetensors"), &tensors).unwrap();
    Checkpoint::load(&cdir).unwrap();
    // A kill between moving the old checkpoint aside and moving the new one in: the old one
    // comes back; temporary leftovers go.
    std::fs::rename(&cdir, dir.join("checkpoint.old-123-0-abc")).unwrap();
    std::fs::create_dir(dir.join("checkpoint.tmp-123-1-def")).unwrap();
    std::fs::write(dir.join("checkpoint.tmp-123-1-def/state.json"), b"{").unwrap();
    std::fs::write(dir.join(".config.json.tmp-123-2-0"), b"{\"half").unwrap();
    let done = recover_run_dir(&dir).unwrap();
    assert_eq!(done.len(), 3, "{done:?}");
    Checkpoint::load(&cdir).unwrap();
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["checkpoint".to_string()]);
}

#[test]
fn online_runs_resume_bit_identically() {
    // Fresh rows every epoch from a deterministic simulator: epoch e ≥ 2 trains on block e − 1,
    // seeded from it, so the resumed run draws exactly what the uninterrupted one drew.
    let sim: gkl_gpu::training::npe::Simulator = std::sync::Arc::new(data);
    let (t, x) = data(1000, 14);
    let s = settings(Method::Npe, 5);
    let opts = |dir: &Path, fault, resume| TrainOptions {
        online: Some(sim.clone()),
        checkpoint: ck(dir, 0),
        fault,
        resume,
        ..Default::default()
    };
    let whole = run(
        ctx(),
        mem(&t, &x),
        &s,
        opts(&scratch("online-whole"), None, None),
    )
    .unwrap();
    let dir = scratch("online-cut");
    let cut = run(
        ctx(),
        mem(&t, &x),
        &s,
        opts(
            &dir,
            Some(Fault {
                kind: FaultKind::OutOfMemory,
                epoch: 4,
            }),
            None,
        ),
    );
    assert!(matches!(
        cut,
        Err(TrainError::Interrupted { saved: Some(_), .. })
    ));
    let cp = Checkpoint::load(&Checkpoint::dir_of(&dir)).unwrap();
    assert_eq!(cp.state.epoch, 3);
    let resumed = run(ctx(), mem(&t, &x), &s, opts(&dir, None, Some(cp))).unwrap();
    assert_eq!(losses(&resumed), losses(&whole));
    assert_eq!(bits(&resumed.model.params), bits(&whole.model.params));
}
