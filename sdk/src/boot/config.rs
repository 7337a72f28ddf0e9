//! Profiles and groups, matchbox's model: a profile says how a machine boots (kernel,
//! initrds, kernel arguments, a generic template); a group picks a profile for the machines
//! whose labels match all of its selectors, and carries metadata for templates.
//!
//! They are read from matchbox's directory layout (`profiles/*.json`, `groups/*.json`,
//! `generic/*`, `assets/`) or built in code, and checked as a whole before a server uses
//! them: a bad file refuses the configuration, naming the file, the field and the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::assets::{AssetError, Assets, Digest};
use super::labels::{Labels, Mac};

/// The labels a machine's boot script sends (matchbox's `/boot.ipxe`), which selectors may
/// name without declaring them.
pub const BOOT_LABELS: [&str; 6] = ["uuid", "mac", "domain", "hostname", "serial", "arch"];

/// How a profile boots a machine (matchbox's `boot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetBoot {
    /// The kernel's URL, usually `/assets/...` on this server.
    pub kernel: String,
    /// The initrds, each a URL optionally after iPXE options (`--name main /assets/...`).
    #[serde(default)]
    pub initrd: Vec<String>,
    /// Kernel arguments; iPXE expands its own `${...}` variables in them.
    #[serde(default)]
    pub args: Vec<String>,
}

/// What an asset is to a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The kernel.
    Kernel,
    /// An initrd.
    Initrd,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Kernel => "kernel",
            Part::Initrd => "initrd",
        })
    }
}

impl Part {
    /// The profile field that names it.
    fn field(self) -> &'static str {
        match self {
            Part::Kernel => "boot.kernel",
            Part::Initrd => "boot.initrd",
        }
    }
}

impl NetBoot {
    /// The URLs it boots from, each with what it is: the kernel, then the initrds.
    pub fn urls(&self) -> impl Iterator<Item = (Part, &str)> {
        std::iter::once((Part::Kernel, self.kernel.as_str())).chain(
            self.initrd
                .iter()
                .map(|entry| (Part::Initrd, initrd_url(entry))),
        )
    }

    /// What the asset at `url` is to this boot, if it boots from it.
    pub fn part(&self, url: &str) -> Option<Part> {
        self.urls()
            .find(|(_, booted)| *booted == url)
            .map(|(part, _)| part)
    }
}

/// A profile: how machines boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Its id, which groups name (a file's id is its name without `.json`).
    pub id: String,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// How the machine boots.
    pub boot: NetBoot,
    /// The template `/generic` renders, a file in `generic/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_id: Option<String>,
    /// matchbox's Ignition template: accepted so that matchbox's files load, not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignition_id: Option<String>,
    /// matchbox's cloud-config template: accepted so that matchbox's files load, not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
    /// The sha256 each asset must have, by the URL the profile names it with
    /// (`"/assets/vmlinuz": "9f86d0..."`). The server refuses to serve a file that does
    /// not match, and a configuration whose file does not match already at load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
}

/// A group: which machines get which profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Its id (a file's id is its name without `.json`).
    pub id: String,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// The profile's id.
    pub profile: String,
    /// Labels a machine must have, all of them; none makes this the default group.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Data for templates and `/metadata`.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct ConfigError {
    /// The file (or, for a configuration built in code, `profile ID` or `group ID`).
    pub file: PathBuf,
    /// The field at fault (`selector.mac`, `boot.kernel`, ...), or `file` for the whole.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl ConfigError {
    fn new(file: impl Into<PathBuf>, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A checked configuration: profiles, groups in the order they are tried, templates and
/// assets.
#[derive(Debug, Clone)]
pub struct Config {
    profiles: BTreeMap<String, Profile>,
    /// Most selectors first, then by id: the first that matches wins.
    groups: Vec<Group>,
    templates: tera::Tera,
    assets: Assets,
    /// The digest each asset URL must have, from every profile.
    expected: BTreeMap<String, Digest>,
}

/// A configuration before it is checked.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The profiles, each with where it came from.
    pub profiles: Vec<(PathBuf, Profile)>,
    /// The groups, each with where it came from.
    pub groups: Vec<(PathBuf, Group)>,
    /// Generic templates by name.
    pub templates: BTreeMap<String, String>,
    /// The directory assets are served from (`/assets/NAME` is `DIR/NAME`).
    pub assets: Option<PathBuf>,
    /// Labels selectors may name besides [`BOOT_LABELS`] (machines send them as query
    /// parameters, as matchbox's `os=installed`).
    pub extra_labels: BTreeSet<String>,
}

impl ConfigSource {
    /// Reads matchbox's layout under `dir`: `profiles/*.json`, `groups/*.json`, `generic/*`
    /// and `assets/`, each optional (no groups: every machine gets a 404, as from matchbox).
    pub fn read_dir(dir: &Path) -> Result<Self, ConfigError> {
        if !dir.is_dir() {
            return Err(ConfigError::new(dir, "file", "not a directory"));
        }
        let mut source = Self::default();
        for (file, text) in json_files(&dir.join("profiles"))? {
            let profile: Profile = parse(&file, &text)?;
            id_is_file_name(&file, &profile.id)?;
            source.profiles.push((file, profile));
        }
        for (file, text) in json_files(&dir.join("groups"))? {
            let group: Group = parse(&file, &text)?;
            id_is_file_name(&file, &group.id)?;
            source.groups.push((file, group));
        }
        let generic = dir.join("generic");
        if generic.is_dir() {
            for entry in read_dir_sorted(&generic)? {
                let text = fs::read_to_string(&entry)
                    .map_err(|e| ConfigError::new(&entry, "file", e.to_string()))?;
                let name = file_name(&entry);
                source.templates.insert(name, text);
            }
        }
        let assets = dir.join("assets");
        source.assets = assets.is_dir().then_some(assets);
        Ok(source)
    }

    /// Adds a profile built in code.
    pub fn profile(mut self, profile: Profile) -> Self {
        let origin = PathBuf::from(format!("profile {}", profile.id));
        self.profiles.push((origin, profile));
        self
    }

    /// Adds a group built in code.
    pub fn group(mut self, group: Group) -> Self {
        let origin = PathBuf::from(format!("group {}", group.id));
        self.groups.push((origin, group));
        self
    }

    /// Adds generic template `name`.
    pub fn template(mut self, name: &str, text: &str) -> Self {
        self.templates.insert(name.to_owned(), text.to_owned());
        self
    }

    /// Serves assets from `dir`.
    pub fn assets(mut self, dir: &Path) -> Self {
        self.assets = Some(dir.to_path_buf());
        self
    }

    /// Lets selectors name `label` besides [`BOOT_LABELS`].
    pub fn extra_label(mut self, label: &str) -> Self {
        self.extra_labels.insert(label.to_owned());
        self
    }

    /// Checks everything and orders the groups.
    pub fn check(self) -> Result<Config, ConfigError> {
        let assets = Assets::new(self.assets.clone());
        let mut templates = tera::Tera::new();
        for (name, text) in &self.templates {
            templates.add_raw_template(name, text).map_err(|e| {
                ConfigError::new(Path::new("generic").join(name), "template", e.to_string())
            })?;
        }
        let mut profiles = BTreeMap::new();
        let mut expected: BTreeMap<String, Digest> = BTreeMap::new();
        for (file, profile) in self.profiles {
            for (url, digest) in check_profile(&file, &profile, &self.templates, &assets)? {
                match expected.get(&url) {
                    Some(other) if *other != digest => {
                        return Err(ConfigError::new(
                            &file,
                            format!("digests.{url}"),
                            format!("another profile expects sha256 {other} for this asset"),
                        ))
                    }
                    _ => {
                        expected.insert(url, digest);
                    }
                }
            }
            if profiles.contains_key(&profile.id) {
                return Err(ConfigError::new(
                    &file,
                    "id",
                    format!("a second profile with id {:?}", profile.id),
                ));
            }
            profiles.insert(profile.id.clone(), profile);
        }
        let mut groups: Vec<Group> = Vec::new();
        for (file, mut group) in self.groups {
            check_group(&file, &mut group, &profiles, &self.extra_labels)?;
            if let Some(twin) = groups.iter().find(|g| g.selector == group.selector) {
                let what = if group.selector.is_empty() {
                    "a second default group (no selector)".to_owned()
                } else {
                    "the same selector as another group".to_owned()
                };
                return Err(ConfigError::new(
                    &file,
                    "selector",
                    format!(
                        "{what}: {:?} and {:?} could both be chosen",
                        twin.id, group.id
                    ),
                ));
            }
            if groups.iter().any(|g| g.id == group.id) {
                return Err(ConfigError::new(
                    &file,
                    "id",
                    format!("a second group with id {:?}", group.id),
                ));
            }
            groups.push(group);
        }
        groups.sort_by(|a, b| {
            b.selector
                .len()
                .cmp(&a.selector.len())
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(Config {
            profiles,
            groups,
            templates,
            assets,
            expected,
        })
    }
}

impl Config {
    /// The group for a machine with `labels`: of those whose selectors all match, the one
    /// with the most selectors, then the first by id.
    pub fn select(&self, labels: &Labels) -> Option<&Group> {
        self.groups.iter().find(|group| {
            group
                .selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value.as_str()))
        })
    }

    /// The profile a group names (checked to exist).
    pub fn profile(&self, group: &Group) -> Option<&Profile> {
        self.profiles.get(&group.profile)
    }

    /// The generic templates.
    pub fn templates(&self) -> &tera::Tera {
        &self.templates
    }

    /// The assets.
    pub fn assets(&self) -> &Assets {
        &self.assets
    }

    /// The groups, in the order they are tried.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The digest a profile expects for the asset at `url` (`/assets/NAME`), if any.
    pub fn expected_digest(&self, url: &str) -> Option<Digest> {
        self.expected.get(url).copied()
    }
}

/// Checks `profile` and returns the digests it expects, by asset URL.
fn check_profile(
    file: &Path,
    profile: &Profile,
    templates: &BTreeMap<String, String>,
    assets: &Assets,
) -> Result<Vec<(String, Digest)>, ConfigError> {
    check_id(file, &profile.id)?;
    if profile.boot.kernel.trim().is_empty() {
        return Err(ConfigError::new(
            file,
            "boot.kernel",
            "expected the kernel's URL",
        ));
    }
    if let Some(generic) = &profile.generic_id {
        if !templates.contains_key(generic) {
            return Err(ConfigError::new(
                file,
                "generic_id",
                format!("no template {generic:?} in generic/"),
            ));
        }
    }
    let mut digests = Vec::new();
    for (part, url) in profile.boot.urls() {
        let expected = match profile.digests.get(url) {
            Some(hex) => Some(hex.parse::<Digest>().map_err(|error| {
                ConfigError::new(file, format!("digests.{url}"), error.to_string())
            })?),
            None => None,
        };
        let Some(name) = url.strip_prefix("/assets/") else {
            if expected.is_some() {
                return Err(ConfigError::new(
                    file,
                    format!("digests.{url}"),
                    "only this server's assets (/assets/...) can be checked",
                ));
            }
            continue;
        };
        assets
            .check(name, expected.as_ref())
            .map_err(|error: AssetError| ConfigError::new(file, part.field(), error.to_string()))?;
        digests.extend(expected.map(|digest| (url.to_owned(), digest)));
    }
    for url in profile.digests.keys() {
        if profile.boot.part(url).is_none() {
            return Err(ConfigError::new(
                file,
                format!("digests.{url}"),
                "a digest for an asset the profile does not boot",
            ));
        }
    }
    Ok(digests)
}

fn check_group(
    file: &Path,
    group: &mut Group,
    profiles: &BTreeMap<String, Profile>,
    extra_labels: &BTreeSet<String>,
) -> Result<(), ConfigError> {
    check_id(file, &group.id)?;
    if !profiles.contains_key(&group.profile) {
        return Err(ConfigError::new(
            file,
            "profile",
            format!("no profile with id {:?}", group.profile),
        ));
    }
    for (key, value) in group.selector.iter_mut() {
        if !BOOT_LABELS.contains(&key.as_str()) && !extra_labels.contains(key) {
            return Err(ConfigError::new(
                file,
                format!("selector.{key}"),
                format!(
                    "unknown label: machines send {} (declare others as extra labels)",
                    BOOT_LABELS.join(", ")
                ),
            ));
        }
        if key == "mac" {
            let mac = value
                .parse::<Mac>()
                .map_err(|error| ConfigError::new(file, "selector.mac", error.to_string()))?;
            *value = mac.to_string();
        }
    }
    Ok(())
}

fn check_id(file: &Path, id: &str) -> Result<(), ConfigError> {
    let fine = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(ConfigError::new(
            file,
            "id",
            format!("expected letters, digits, '-', '_' or '.', got {id:?}"),
        ))
    }
}

/// matchbox finds `profiles/ID.json` by its id, so a file's id is its name.
fn id_is_file_name(file: &Path, id: &str) -> Result<(), ConfigError> {
    let stem = file.file_stem().map(|s| s.to_string_lossy());
    if stem.as_deref() == Some(id) {
        Ok(())
    } else {
        Err(ConfigError::new(
            file,
            "id",
            format!(
                "{id:?} is not the file's name ({})",
                stem.unwrap_or_default()
            ),
        ))
    }
}

/// An initrd entry's URL: its last word (`--name main /assets/initrd` is `/assets/initrd`).
pub fn initrd_url(entry: &str) -> &str {
    entry.split_whitespace().last().unwrap_or("")
}

fn parse<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    serde_json::from_str(text).map_err(|e| {
        // serde_json names the unknown or missing field in its message.
        ConfigError::new(file, "file", e.to_string())
    })
}

/// The `*.json` files of `dir` (none when it does not exist), sorted, with their text.
fn json_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    read_dir_sorted(dir)?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            fs::read_to_string(&path)
                .map(|text| (path.clone(), text))
                .map_err(|e| ConfigError::new(&path, "file", e.to_string()))
        })
        .collect()
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut paths = fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| ConfigError::new(dir, "file", e.to_string()))?;
    paths.retain(|path| path.is_file());
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}
