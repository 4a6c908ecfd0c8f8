//! Prepared datasets in one file that travels: the aligned 64×64 faces with their labels,
//! subjects (hence neutral partners), splits and FER+ votes, so that `train` and `eval` can run
//! where the raw archives and the face detector are not (a GPU machine that takes 64 MiB).
//!
//! A pack is a tar file: `pack.json` (what it holds), and per dataset `NAME.json.z` (the samples as in the
//! preparation cache, compressed) and `NAME.faces.z` (the faces, each row stored as its difference
//! to the row above, zlib-compressed: lossless, about 60 % of the raw bytes for face crops).
use std::io::{Read, Write};
use std::path::Path;

use flate2::write::ZlibEncoder;
use serde::{Deserialize, Serialize};

use super::{CacheMeta, DataError, DatasetKind, PreparedSet, Split, FACE_PIXELS, PREPARE_VERSION};
use crate::face::FACE_SIZE;

const FORMAT: &str = "dgcn-pack";
/// Faces compressed between two size checks against the budget.
const CHUNK: usize = 256;

/// What `pack.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackInfo {
    pub format: String,
    pub prepare_version: u32,
    pub datasets: Vec<PackedSet>,
}

/// One dataset in a pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackedSet {
    pub name: String,
    /// Faces packed, per split.
    pub faces: usize,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    /// Faces of the prepared set left out: to keep within the size budget, or of a split not packed.
    pub left_out: usize,
    /// Bytes of its compressed faces.
    pub bytes: usize,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Each row of each face as its difference to the row above (the first row as it is).
fn filter_rows(face: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&face[..FACE_SIZE]);
    for i in FACE_SIZE..face.len() {
        out.push(face[i].wrapping_sub(face[i - FACE_SIZE]));
    }
}

fn unfilter_rows(faces: &mut [u8]) {
    for face in faces.chunks_mut(FACE_PIXELS) {
        for i in FACE_SIZE..face.len() {
            face[i] = face[i].wrapping_add(face[i - FACE_SIZE]);
        }
    }
}

fn zlib(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes)?;
    z.finish()
}

/// Compresses the faces of `order` until `budget` bytes would be passed (checked every
/// [`CHUNK`] faces). Returns the compressed bytes and how many faces of `order` they hold.
fn compress(
    set: &PreparedSet,
    order: &[usize],
    budget: Option<usize>,
) -> std::io::Result<(Vec<u8>, usize)> {
    let mut enc = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let mut filtered = Vec::with_capacity(CHUNK * FACE_PIXELS);
    let mut taken = 0;
    for chunk in order.chunks(CHUNK) {
        filtered.clear();
        for &i in chunk {
            filter_rows(set.face(i), &mut filtered);
        }
        // A sync flush after each chunk makes the size so far exact; a chunk over budget is
        // written to a copy first so it can be dropped.
        if let Some(b) = budget {
            let before = enc.get_ref().len();
            let estimate = zlib(&filtered)?.len();
            if before + estimate > b {
                // Take what fits of this chunk, face by face, at the chunk's rate.
                let per_face = estimate.div_ceil(chunk.len()).max(1);
                let fits = b.saturating_sub(before) / per_face;
                if fits > 0 {
                    enc.write_all(&filtered[..fits * FACE_PIXELS])?;
                    taken += fits;
                }
                break;
            }
        }
        enc.write_all(&filtered)?;
        enc.flush()?;
        taken += chunk.len();
    }
    Ok((enc.finish()?, taken))
}

/// Writes `sets` into a pack at `out`, in the order given, with the faces of `splits` alone
/// (e.g. train and valid for a machine that only trains: the test faces stay behind). With
/// `max_bytes`, the faces of the set that would pass it are cut (its training split first, then
/// validation, then test) and later sets are left out; the pack says so.
pub fn write_pack(
    sets: &[PreparedSet],
    splits: &[Split],
    out: &Path,
    max_bytes: Option<usize>,
) -> Result<PackInfo, DataError> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut info = PackInfo {
        format: FORMAT.into(),
        prepare_version: PREPARE_VERSION,
        datasets: Vec::new(),
    };
    // Room for pack.json and the tar's headers and padding (512 bytes each per entry).
    let mut used = 8 * 1024;
    for set in sets {
        let mut order: Vec<usize> = Vec::with_capacity(set.len());
        for split in [Split::Train, Split::Valid, Split::Test] {
            if splits.contains(&split) {
                order.extend(set.split_indices(split));
            }
        }
        // The samples' JSON of the whole set bounds that of what is kept: reserved first.
        let json_bound = zlib(&serde_json::to_vec(&set.samples).map_err(|e| io_err(out, e))?)
            .map_err(|e| io_err(out, e))?
            .len();
        let budget = max_bytes.map(|m| m.saturating_sub(used + json_bound + 2 * 1024));
        let (bytes, taken) = compress(set, &order, budget).map_err(|e| io_err(out, e))?;
        // The stored faces follow `order`; the samples are kept in the same order.
        let sub = set.subset(&order[..taken]);
        let meta = CacheMeta {
            version: PREPARE_VERSION,
            kind: set.kind,
            samples: sub.samples.clone(),
            detected: sub.detected.clone(),
            unreadable: sub.unreadable.clone(),
        };
        let json = serde_json::to_vec(&meta)
            .map_err(|e| io_err(out, e))
            .and_then(|j| zlib(&j).map_err(|e| io_err(out, e)))?;
        used += bytes.len() + json.len() + 2 * 1024;
        let count = |s: Split| sub.samples.iter().filter(|x| x.split == s).count();
        info.datasets.push(PackedSet {
            name: set.kind.name().into(),
            faces: sub.len(),
            train: count(Split::Train),
            valid: count(Split::Valid),
            test: count(Split::Test),
            left_out: set.len() - sub.len(),
            bytes: bytes.len(),
        });
        entries.push((format!("{}.json.z", set.kind.name()), json));
        entries.push((format!("{}.faces.z", set.kind.name()), bytes));
    }
    let pack_json = serde_json::to_vec_pretty(&info).map_err(|e| io_err(out, e))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let tmp = out.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    for (name, data) in std::iter::once(("pack.json".to_string(), pack_json)).chain(entries) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, &name, data.as_slice())
            .map_err(|e| io_err(&tmp, e))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| io_err(out, e))?;
    Ok(info)
}

/// What a pack holds (its `pack.json`), without reading the faces.
pub fn pack_info(path: &Path) -> Result<PackInfo, DataError> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    for entry in archive.entries().map_err(|e| io_err(path, e))? {
        let mut entry = entry.map_err(|e| io_err(path, format!("not a dgcn pack ({e})")))?;
        if entry.path().is_ok_and(|p| p.as_os_str() == "pack.json") {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(|e| io_err(path, e))?;
            return serde_json::from_slice::<PackInfo>(&data)
                .ok()
                .filter(|i| i.format == FORMAT)
                .ok_or_else(|| io_err(path, "not a dgcn pack (bad pack.json)"));
        }
    }
    Err(io_err(path, "not a dgcn pack (no pack.json)"))
}

/// Reads the datasets `kinds` from a pack (in that order). A dataset the pack lacks, or a pack
/// that is not one, is an error that says what it holds.
pub fn read_pack(path: &Path, kinds: &[DatasetKind]) -> Result<Vec<PreparedSet>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut files = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive.entries().map_err(|e| io_err(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err(path, format!("not a dgcn pack ({e})")))?;
        let name = entry
            .path()
            .map_err(|e| io_err(path, e))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| io_err(path, e))?;
        files.insert(name, data);
    }
    let info: PackInfo = files
        .get("pack.json")
        .and_then(|j| serde_json::from_slice(j).ok())
        .filter(|i: &PackInfo| i.format == FORMAT)
        .ok_or_else(|| io_err(path, "not a dgcn pack (no pack.json)"))?;
    if info.prepare_version != PREPARE_VERSION {
        return Err(io_err(
            path,
            format!(
                "packed with preparation version {}, this dgcn prepares version {}: pack the datasets again",
                info.prepare_version, PREPARE_VERSION
            ),
        ));
    }
    let held: Vec<&str> = info.datasets.iter().map(|d| d.name.as_str()).collect();
    let mut sets = Vec::new();
    for &kind in kinds {
        let name = kind.name();
        let (Some(json), Some(z)) = (
            files.get(&format!("{name}.json.z")),
            files.get(&format!("{name}.faces.z")),
        ) else {
            return Err(io_err(
                path,
                format!("holds {} but not {name}", held.join(", ")),
            ));
        };
        let mut text = Vec::new();
        flate2::read::ZlibDecoder::new(json.as_slice())
            .read_to_end(&mut text)
            .map_err(|e| io_err(path, format!("{name}: {e}")))?;
        let meta: CacheMeta = serde_json::from_slice(&text).map_err(|e| io_err(path, e))?;
        let mut faces = Vec::with_capacity(meta.samples.len() * FACE_PIXELS);
        flate2::read::ZlibDecoder::new(z.as_slice())
            .read_to_end(&mut faces)
            .map_err(|e| io_err(path, format!("{name}: {e}")))?;
        if faces.len() != meta.samples.len() * FACE_PIXELS
            || meta.detected.len() != meta.samples.len()
        {
            return Err(io_err(
                path,
                format!(
                    "{name}: {} bytes of faces for {} samples (damaged pack)",
                    faces.len(),
                    meta.samples.len()
                ),
            ));
        }
        unfilter_rows(&mut faces);
        sets.push(PreparedSet {
            kind: meta.kind,
            samples: meta.samples,
            faces,
            detected: meta.detected,
            unreadable: meta.unreadable,
        });
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SampleInfo;
    use crate::labels::Expression;

    fn synthetic(kind: DatasetKind, n: usize) -> PreparedSet {
        let mut faces = Vec::new();
        let mut samples = Vec::new();
        let mut state = 0x2545_f491_u32 ^ n as u32;
        for i in 0..n {
            // A smooth gradient with noise (xorshift): compressible in part, different per face.
            faces.extend((0..FACE_PIXELS).map(|p| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((p / FACE_SIZE + p % FACE_SIZE + i * 7) as u32 * 2 + (state >> 27)) as u8
            }));
            samples.push(SampleInfo {
                path: format!("face{i}.png"),
                label: if i % 2 == 0 {
                    Expression::Neutral
                } else {
                    Expression::Happy
                },
                subject: Some((i / 2) as u32),
                split: [Split::Test, Split::Train, Split::Valid][i % 3],
                votes: None,
            });
        }
        PreparedSet {
            kind,
            samples,
            faces,
            detected: (0..n).map(|i| i % 5 != 0).collect(),
            unreadable: vec!["broken.png".into()],
        }
    }

    const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    #[test]
    fn pack_round_trips_and_cuts_at_its_budget() {
        let dir = std::env::temp_dir().join(format!("dgcn-pack-{}", std::process::id()));
        let path = dir.join("p.pack");
        let a = synthetic(DatasetKind::Tfeid, 40);
        let b = synthetic(DatasetKind::Ferplus, 900);
        let info = write_pack(&[a.clone(), b.clone()], &ALL, &path, None).expect("packed");
        assert_eq!(info.datasets[1].left_out, 0);
        let back = read_pack(&path, &[DatasetKind::Ferplus, DatasetKind::Tfeid]).expect("read");
        // Same samples and faces, training split first.
        for (orig, got) in [(&b, &back[0]), (&a, &back[1])] {
            assert_eq!(orig.len(), got.len());
            for (k, s) in got.samples.iter().enumerate() {
                let i = orig
                    .samples
                    .iter()
                    .position(|o| o.path == s.path)
                    .expect("same sample");
                assert_eq!(orig.face(i), got.face(k), "{}", s.path);
                assert_eq!(orig.samples[i].subject, s.subject);
                assert_eq!(orig.detected[i], got.detected[k]);
            }
            assert_eq!(got.samples[0].split, Split::Train);
        }
        // A dataset it does not hold: the error names what it holds.
        let err = read_pack(&path, &[DatasetKind::Fer2013])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("tfeid, ferplus") && err.contains("fer2013"),
            "{err}"
        );
        // A budget: the second set is cut, training faces first, and the file keeps to it.
        let full = std::fs::metadata(&path).expect("size").len() as usize;
        let budget = full * 6 / 10;
        let info = write_pack(&[a.clone(), b.clone()], &ALL, &path, Some(budget)).expect("packed");
        let size = std::fs::metadata(&path).expect("size").len() as usize;
        assert!(size <= budget, "{size} > {budget}");
        let cut = &info.datasets[1];
        assert!(cut.left_out > 0 && cut.faces > 0, "{cut:?}");
        assert_eq!(cut.test, 0, "{cut:?}");
        let back = read_pack(&path, &[DatasetKind::Ferplus]).expect("read");
        assert_eq!(back[0].len(), cut.faces);
        // Without the test split: no test face, every training and validation face.
        let info = write_pack(
            std::slice::from_ref(&b),
            &[Split::Train, Split::Valid],
            &path,
            None,
        )
        .expect("packed");
        let back = read_pack(&path, &[DatasetKind::Ferplus]).expect("read");
        let wanted = b.samples.iter().filter(|s| s.split != Split::Test).count();
        assert_eq!(back[0].len(), wanted);
        assert!(back[0].samples.iter().all(|s| s.split != Split::Test));
        assert_eq!(
            (info.datasets[0].test, info.datasets[0].left_out),
            (0, b.len() - wanted)
        );
        // Not a pack: a clear error.
        std::fs::write(&path, b"hello").expect("write");
        assert!(read_pack(&path, &[DatasetKind::Tfeid]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
