//! A pack (`dgcn data pack`) round trip on real faces. Its own test binary: the comparison needs
//! libtorch's process-wide random generator to itself (tests in one binary run in parallel).
mod util;

use dgcn::data::{DatasetKind, Split};
use dgcn::learn::{train, TrainConfig, TrainData};
use dgcn::model::ModelConfig;
use tch::Device;

/// A pack (`dgcn data pack`) holds the prepared faces exactly: a network trained from it equals,
/// variable for variable, one trained from the archives' preparation with the same seed.
#[test]
fn training_from_a_pack_equals_training_from_the_archives() {
    tch::set_num_threads(2);
    let tfeid = util::prepared(DatasetKind::Tfeid).truncated_per_class(12);
    let ck = util::prepared(DatasetKind::Ckplus48).truncated_per_class(8);
    let dir = util::temp_dir("pack-round-trip");
    let path = dir.join("lab.pack");
    let info = dgcn::data::pack::write_pack(
        &[tfeid.clone(), ck.clone()],
        &[Split::Train, Split::Valid, Split::Test],
        &path,
        None,
    )
    .expect("packed");
    assert_eq!(info.datasets.len(), 2);
    let packed = dgcn::data::pack::read_pack(&path, &[DatasetKind::Tfeid, DatasetKind::Ckplus48])
        .expect("read back");
    let cfg = TrainConfig {
        model: ModelConfig {
            width: 0.25,
            hidden: 32,
            use_reconstruction: false,
            ..ModelConfig::default()
        },
        gen_epochs: 1,
        epochs: 1,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let run = |sets: &[&dgcn::data::PreparedSet]| {
        let parts: Vec<_> = sets.iter().map(|s| (*s, (0..s.len()).collect())).collect();
        train(
            &TrainData::from_sets(&parts),
            None,
            &cfg,
            Device::Cpu,
            None,
            false,
            None,
        )
        .expect("trains")
    };
    let a = run(&[&tfeid, &ck]);
    let b = run(&[&packed[0], &packed[1]]);
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    assert_eq!(va.len(), vb.len());
    for (name, t) in &va {
        assert!(t.equal(&vb[name]), "{name} differs");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
