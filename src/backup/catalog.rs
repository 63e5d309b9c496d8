//! The backups directory as everything else reads it: the names of our
//! backups, the manifest beside each, the list of backups (newest first,
//! verified or not, with what each holds and whether it shrank) and the
//! backup a new one is compared with.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backup::contents::Contents;
use crate::backup::hashio::PART_SIZE;
use crate::backup::media::MediaInfo;
use crate::backup::shrink::{Baseline, Shrunk};
use crate::system::timefmt;

/// The manifest written beside each backup (`<backup>.json`). Fields added
/// later are optional, so older manifests keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub site: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub uncompressed_size: u64,
    pub database: String,
    /// The tables and rows the dump holds, counted as it was written; None
    /// in manifests written before they were.
    #[serde(default)]
    pub contents: Option<Contents>,
    pub server_version: String,
    pub client_version: String,
    pub started_utc: String,
    pub finished_utc: String,
    /// The live release when the backup was taken, if any.
    pub release: Option<String>,
    /// The media archive published with this backup, if any.
    #[serde(default)]
    pub media: Option<MediaInfo>,
    pub verified: bool,
    /// Set when the dump holds far fewer tables or rows than the previous
    /// backup (`crate::backup::shrink`).
    #[serde(default)]
    pub shrunk: Option<Shrunk>,
    /// The SHA-256 of each part of the file, which a restore checks before
    /// loading the part; None in manifests written before they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartHashes>,
}

/// The file hashed in parts of `size` bytes (the last one shorter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartHashes {
    pub size: u64,
    /// The SHA-256 of the whole file these parts are of: parts count only
    /// for the file the manifest names (a manifest edited by hand to name
    /// another file keeps the old parts, and they are not used).
    pub file_sha256: String,
    pub sha256: Vec<String>,
}

impl Manifest {
    /// The part hashes, when they are of the file this manifest names and
    /// their size is one a restore can hold in memory (a damaged or edited
    /// manifest with parts of terabytes falls back to the full check).
    pub fn parts(&self) -> Option<&PartHashes> {
        self.parts
            .as_ref()
            .filter(|p| p.file_sha256 == self.sha256 && (1..=PART_SIZE).contains(&p.size))
    }
}

impl Manifest {
    /// What shrank against what, when this backup shrank and nobody
    /// accepted it (`crate::backup::shrink::Shrunk::describe`).
    pub fn unaccepted_shrink(&self) -> Option<String> {
        let s = self.shrunk.as_ref().filter(|s| s.unaccepted())?;
        Some(s.describe(&self.database, self.contents.unwrap_or_default()))
    }
}

/// File name of a backup taken at `unix` seconds.
pub fn backup_name(site: &str, unix: u64) -> String {
    format!("{site}-{}.sql.gz", timefmt::compact_utc(unix))
}

/// The timestamp in a name made by [`backup_name`], as unix seconds.
pub fn parse_backup_name(site: &str, name: &str) -> Option<u64> {
    let stamp = name
        .strip_prefix(site)?
        .strip_prefix('-')?
        .strip_suffix(".sql.gz")?;
    timefmt::parse_compact_utc(stamp)
}

/// One backup as `--list`, `sumctl backups` and retention see it. What it
/// holds and whether it shrank come from its manifest, and only when that
/// manifest verifies it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listed {
    pub file: String,
    pub taken_utc: String,
    pub unix: u64,
    pub size: u64,
    pub verified: bool,
    pub database: Option<String>,
    pub contents: Option<Contents>,
    pub shrunk: Option<Shrunk>,
    /// The media archive beside the dump, as its manifest records it, when
    /// the file is there with the recorded size.
    pub media: Option<MediaInfo>,
    /// The manifest records a media archive that is not there, or not with
    /// the recorded size: `sum-restore --media` would refuse it.
    pub media_missing: bool,
}

impl Listed {
    /// Verified, but shrank and nobody accepted it: retention keeps it
    /// without counting it, and later backups are not compared with it.
    pub fn is_shrunk(&self) -> bool {
        self.verified && self.shrunk.as_ref().is_some_and(Shrunk::unaccepted)
    }
}

/// Backups of a site, newest first. A backup is verified when its manifest
/// says so and names the same size.
pub fn list(site: &str, dir: &Path) -> std::io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(unix) = parse_backup_name(site, &name) else {
            continue;
        };
        let size = entry.metadata()?.len();
        let manifest: Option<Manifest> = fs_err::read(dir.join(format!("{name}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|m: &Manifest| m.verified && m.size == size && m.file == name);
        let recorded = manifest.as_ref().and_then(|m| m.media.clone());
        let media = recorded
            .clone()
            .filter(|info| media_present(dir, info) == Some(true));
        out.push(Listed {
            media_missing: recorded.is_some() && media.is_none(),
            media,
            verified: manifest.is_some(),
            taken_utc: timefmt::iso_utc(unix),
            unix,
            size,
            database: manifest.as_ref().map(|m| m.database.clone()),
            contents: manifest.as_ref().and_then(|m| m.contents),
            shrunk: manifest.and_then(|m| m.shrunk),
            file: name,
        });
    }
    out.sort_by(|a, b| b.unix.cmp(&a.unix).then_with(|| b.file.cmp(&a.file)));
    Ok(out)
}

/// Whether the media archive `info` names is in `dir` with the recorded
/// size; None when its name is not a plain file name.
fn media_present(dir: &Path, info: &MediaInfo) -> Option<bool> {
    let name = Path::new(&info.file);
    if name.components().count() != 1 || name.file_name().is_none() {
        return None;
    }
    Some(
        fs_err::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.len() == info.size),
    )
}

/// The backup a new one is compared with: the newest verified backup with
/// counts that did not shrink (or was accepted). Comparing with a shrunken
/// one would let a wrong `DATABASE_URL` look normal from its second night.
pub fn baseline(listed: &[Listed]) -> Option<Baseline<'_>> {
    listed
        .iter()
        .filter(|b| b.verified && !b.is_shrunk())
        .find_map(|b| {
            Some(Baseline {
                file: &b.file,
                database: b.database.as_deref().unwrap_or(""),
                contents: b.contents?,
            })
        })
}

/// A verified manifest of site `acme` for tests: the file, its size, its
/// SHA-256 and its uncompressed size; everything else empty.
#[cfg(test)]
impl Manifest {
    pub(crate) fn for_test(file: &str, size: u64, sha256: &str, uncompressed_size: u64) -> Self {
        Manifest {
            site: "acme".into(),
            file: file.into(),
            size,
            sha256: sha256.into(),
            uncompressed_size,
            database: "acme".into(),
            contents: None,
            server_version: String::new(),
            client_version: String::new(),
            started_utc: String::new(),
            finished_utc: String::new(),
            release: None,
            media: None,
            verified: true,
            shrunk: None,
            parts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn names_from_outside_never_panic(name in any::<String>()) {
            let _ = parse_backup_name("acme", &name);
        }

        #[test]
        fn backup_names_round_trip(unix in 0u64..4_102_444_800) {
            let name = backup_name("acme", unix);
            prop_assert_eq!(parse_backup_name("acme", &name), Some(unix));
            prop_assert_eq!(parse_backup_name("acm", &name), None);
        }
    }

    fn listed(unix: u64, contents: Option<(u64, u64)>, shrunk: Option<bool>) -> Listed {
        Listed {
            file: backup_name("acme", unix),
            unix,
            verified: true,
            database: Some("acme".into()),
            contents: contents.map(|(tables, rows)| Contents { tables, rows }),
            shrunk: shrunk.map(|accepted| Shrunk {
                previous: "acme-20240101T000000Z.sql.gz".into(),
                previous_database: "acme".into(),
                previous_tables: 9,
                previous_rows: 9000,
                accepted,
            }),
            ..Listed::default()
        }
    }

    #[test]
    fn parts_count_only_for_this_file_and_a_size_a_restore_can_hold() {
        let parts = |size: u64, of: &str| PartHashes {
            size,
            file_sha256: of.into(),
            sha256: vec!["00".into()],
        };
        let m = |p: PartHashes| Manifest {
            parts: Some(p),
            ..Manifest::for_test("acme-20240101T000000Z.sql.gz", 10, "aa", 20)
        };
        assert!(m(parts(PART_SIZE, "aa")).parts().is_some());
        assert!(m(parts(64, "aa")).parts().is_some());
        assert!(m(parts(PART_SIZE, "bb")).parts().is_none());
        assert!(m(parts(0, "aa")).parts().is_none());
        assert!(m(parts(1 << 40, "aa")).parts().is_none());
    }

    #[test]
    fn the_baseline_skips_shrunken_unverified_and_uncounted_backups() {
        let all = vec![
            listed(600, Some((0, 0)), Some(false)),
            Listed {
                verified: false,
                ..listed(500, Some((1, 1)), None)
            },
            listed(400, None, None),
            listed(300, Some((2, 25_000)), None),
            listed(200, Some((3, 30_000)), None),
        ];
        let b = baseline(&all).unwrap();
        assert_eq!((b.file, b.contents.tables), (all[3].file.as_str(), 2));
        assert!(all[0].is_shrunk() && !all[3].is_shrunk());
        // An accepted one is compared with like any other.
        let accepted = vec![listed(700, Some((1, 10)), Some(true)), all[3].clone()];
        assert_eq!(baseline(&accepted).unwrap().file, accepted[0].file);
        assert!(baseline(&all[..3]).is_none());
    }
}
