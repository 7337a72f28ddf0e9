//! Where playbook blocks are built, under the workspace's target directory.
//!
//! The SDK is built once as a shared library: a package (`sinew-present/sdk`) whose code
//! (`sdk_lib.rs`) re-exports `sinew` and compiles the generic code blocks share, with the
//! dependencies of the workspace's `playbooks` package
//! (sinew, anyhow, ...) and the workspace's profiles, so that cargo compiles its
//! dependencies the way the workspace does (and reuses what the workspace's release builds
//! compiled). A block is then one `main.rs` (`sinew-present/slide-DECK-3-0/src/main.rs`)
//! that rustc compiles and links against that library in a fraction of a second: linking
//! the SDK and its three hundred crates statically into every edit's binary took most of a
//! second.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// Why a scratch package could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// A workspace manifest could not be read or is not what sinew's workspace looks like.
    #[error("cannot read {}: {reason}", file.display())]
    Manifest {
        /// The manifest.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing the package failed.
    #[error("cannot write the scratch package {}: {source}", dir.display())]
    Write {
        /// The package directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where scratch packages go and what they depend on.
#[derive(Debug, Clone)]
pub struct Scratch {
    /// Names the deck in package names, so that two decks' blocks never share a package.
    deck: String,
    /// The workspace that holds `sdk/` and `playbooks/`.
    workspace: PathBuf,
    /// The shared cargo target directory.
    target: PathBuf,
}

/// A block's source, written where it is built.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its directory (holding `src/main.rs`).
    pub dir: PathBuf,
    /// Its binary's name (also its crate's, with `_` for `-`).
    pub name: String,
    /// Where the binary goes.
    pub executable: PathBuf,
}

/// The SDK package, written.
#[derive(Debug, Clone)]
pub struct SdkPackage {
    /// Its directory (holding `Cargo.toml`).
    pub dir: PathBuf,
    /// The library's crate name.
    pub lib: String,
    /// The crates a block may use by name (`sinew`, `anyhow`, ...).
    pub crates: Vec<String>,
}

impl Scratch {
    /// Scratch packages of the deck that `deck` names (a short key), for `workspace`, built
    /// in `CARGO_TARGET_DIR` or `workspace/target`.
    pub fn new(deck: &str, workspace: &Path) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| {
                if t.is_absolute() {
                    t
                } else {
                    workspace.join(t)
                }
            })
            .unwrap_or_else(|| workspace.join("target"));
        Self {
            deck: deck.to_owned(),
            workspace: workspace.to_path_buf(),
            target,
        }
    }

    /// The cargo target directory the packages share.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The workspace the packages take their dependencies from.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Writes block `block` (`3.0`) of the deck as `slide-DECK-3-0/src/main.rs` holding
    /// `source`, left alone when it already holds it.
    pub fn write(&self, block: &str, source: &str) -> Result<Package, ScratchError> {
        let name = format!("slide-{}-{}", self.deck, block.replace('.', "-"));
        let dir = self.target.join("sinew-present").join(&name);
        write_if_changed(&dir.join("src/main.rs"), source.as_bytes()).map_err(|source| {
            ScratchError::Write {
                dir: dir.clone(),
                source,
            }
        })?;
        Ok(Package {
            executable: dir.join(&name),
            dir,
            name,
        })
    }

    /// Writes the SDK package: a `dylib` that re-exports `sinew`.
    pub fn write_sdk(&self) -> Result<SdkPackage, ScratchError> {
        const NAME: &str = "sinew-present-sdk";
        let dir = self.target.join("sinew-present").join("sdk");
        let mut manifest = self.manifest(NAME)?;
        let crates = manifest
            .get("dependencies")
            .and_then(Value::as_table)
            .map(|deps| deps.keys().cloned().collect())
            .unwrap_or_default();
        shares_its_generics(&mut manifest, NAME);
        let mut lib = Table::new();
        lib.insert("path".into(), "src/lib.rs".into());
        lib.insert("crate-type".into(), Value::Array(vec!["dylib".into()]));
        manifest.insert("lib".into(), lib.into());
        let manifest = format!(
            "# Written by `sinew present`: the SDK as one shared library for playbook blocks.\n\
             {manifest}"
        );
        let lock = fs::read(self.workspace.join("Cargo.lock")).unwrap_or_default();
        write_if_changed(&dir.join("Cargo.toml"), manifest.as_bytes())
            .and_then(|()| write_if_changed(&dir.join("src/lib.rs"), SDK_LIB.as_bytes()))
            .and_then(|()| {
                if lock.is_empty() {
                    Ok(())
                } else {
                    write_if_changed(&dir.join("Cargo.lock"), &lock)
                }
            })
            .map_err(|source| ScratchError::Write {
                dir: dir.clone(),
                source,
            })?;
        Ok(SdkPackage {
            dir,
            lib: NAME.replace('-', "_"),
            crates,
        })
    }

    /// The package's manifest: the playbooks package's dependencies with the workspace's
    /// entries filled in, and the workspace's profiles.
    fn manifest(&self, name: &str) -> Result<Table, ScratchError> {
        let root_file = self.workspace.join("Cargo.toml");
        let root = read_table(&root_file)?;
        let playbooks_file = self.workspace.join("playbooks/Cargo.toml");
        let playbooks = read_table(&playbooks_file)?;
        let bad = |file: &Path, reason: &str| ScratchError::Manifest {
            file: file.to_path_buf(),
            reason: reason.to_owned(),
        };
        let shared = root
            .get("workspace")
            .and_then(|w| w.get("dependencies"))
            .and_then(Value::as_table)
            .ok_or_else(|| bad(&root_file, "expected [workspace.dependencies]"))?;
        let wanted = playbooks
            .get("dependencies")
            .and_then(Value::as_table)
            .ok_or_else(|| bad(&playbooks_file, "expected [dependencies]"))?;
        let mut dependencies = Table::new();
        for (dep, spec) in wanted {
            let spec = match spec.get("workspace").and_then(Value::as_bool) {
                Some(true) => shared
                    .get(dep)
                    .cloned()
                    .ok_or_else(|| bad(&root_file, &format!("no workspace dependency {dep}")))?,
                _ => spec.clone(),
            };
            dependencies.insert(dep.clone(), self.absolute(spec));
        }
        let mut package = Table::new();
        package.insert("name".into(), name.into());
        package.insert("version".into(), "0.0.0".into());
        package.insert("edition".into(), "2021".into());
        package.insert("publish".into(), false.into());
        let mut manifest = Table::new();
        manifest.insert("package".into(), package.into());
        if let Some(Value::Table(profiles)) = root.get("profile") {
            let needed = self.reachable(dependencies.keys());
            manifest.insert("profile".into(), only_needed(profiles, &needed).into());
        }
        manifest.insert("dependencies".into(), dependencies.into());
        // Its own workspace: the package lives under the workspace's target directory.
        manifest.insert("workspace".into(), Table::new().into());
        Ok(manifest)
    }

    /// The packages `roots` need, by name, from the workspace's lockfile; everything when
    /// there is no lockfile to read.
    fn reachable<'a>(&self, roots: impl Iterator<Item = &'a String>) -> Option<HashSet<String>> {
        let lock = read_table(&self.workspace.join("Cargo.lock")).ok()?;
        let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
        for package in lock.get("package")?.as_array()? {
            let name = package.get("name")?.as_str()?;
            let deps = package
                .get("dependencies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                // "name" or "name version" when several versions are locked.
                .filter_map(|dep| dep.split(' ').next());
            edges.entry(name).or_default().extend(deps);
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut todo: Vec<String> = roots.cloned().collect();
        while let Some(name) = todo.pop() {
            if let Some(deps) = edges.get(name.as_str()) {
                todo.extend(
                    deps.iter()
                        .filter(|d| !seen.contains(**d))
                        .map(|d| d.to_string()),
                );
            }
            seen.insert(name);
        }
        Some(seen)
    }

    /// A dependency spec with a relative `path` made absolute against the workspace.
    fn absolute(&self, spec: Value) -> Value {
        match spec {
            Value::Table(mut table) => {
                if let Some(Value::String(path)) = table.get("path") {
                    let path = self.workspace.join(path).to_string_lossy().into_owned();
                    table.insert("path".into(), path.into());
                }
                Value::Table(table)
            }
            other => other,
        }
    }
}

/// The SDK package's library source: re-exports and shared instances.
const SDK_LIB: &str = include_str!("sdk_lib.rs");

/// Builds package `name` at `opt-level = "s"` in release: rustc shares the generic
/// instances of a crate built at opt-level 0, 1 or "s" (not 2 or 3), and blocks then reuse
/// those of `SDK_LIB` instead of compiling their own. Only this crate: shared by every
/// crate, they made a library exporting some 144,000 symbols, which every block's compile
/// read.
fn shares_its_generics(manifest: &mut Table, name: &str) {
    fn entry(table: &mut Table, key: &str) -> Table {
        match table.remove(key) {
            Some(Value::Table(t)) => t,
            _ => Table::new(),
        }
    }
    let mut profiles = entry(manifest, "profile");
    let mut release = entry(&mut profiles, "release");
    let mut packages = entry(&mut release, "package");
    let mut package = entry(&mut packages, name);
    package.insert("opt-level".into(), "s".into());
    packages.insert(name.into(), package.into());
    release.insert("package".into(), packages.into());
    profiles.insert("release".into(), release.into());
    manifest.insert("profile".into(), profiles.into());
}

/// The workspace's profiles without per-package settings for packages the scratch package
/// does not build (cargo warns about each).
fn only_needed(profiles: &Table, needed: &Option<HashSet<String>>) -> Table {
    let Some(needed) = needed else {
        return profiles.clone();
    };
    let mut kept = profiles.clone();
    for (_, profile) in kept.iter_mut() {
        if let Some(Value::Table(packages)) = profile.get_mut("package") {
            packages.retain(|name, _| name == "*" || needed.contains(name));
        }
    }
    kept
}

/// Writes `text` to `path` (and its directory) unless it already holds it, so that cargo
/// and rustc see an unchanged file as fresh. The file is replaced whole (written aside,
/// then renamed): two servers sharing the target directory may write the SDK package at
/// once, and neither's cargo may read half a manifest.
fn write_if_changed(path: &Path, text: &[u8]) -> std::io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let mut aside = tempfile::NamedTempFile::new_in(parent)?;
    std::io::Write::write_all(&mut aside, text)?;
    aside.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn read_table(file: &Path) -> Result<Table, ScratchError> {
    let text = fs::read_to_string(file).map_err(|e| ScratchError::Manifest {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.parse()
        .map_err(|e: toml::de::Error| ScratchError::Manifest {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_package_is_a_dylib_of_the_playbooks_dependencies_with_the_workspace_profiles() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = tempfile::tempdir().unwrap();
        let scratch = Scratch {
            deck: "d1".into(),
            workspace: workspace.to_path_buf(),
            target: target.path().to_path_buf(),
        };
        let sdk = scratch.write_sdk().unwrap();
        assert_eq!(sdk.lib, "sinew_present_sdk");
        assert!(sdk.crates.contains(&"sinew".to_owned()));
        assert!(sdk.crates.contains(&"anyhow".to_owned()));
        let manifest: Table = fs::read_to_string(sdk.dir.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let sinew = &manifest["dependencies"]["sinew"]["path"];
        assert_eq!(
            sinew.as_str().unwrap(),
            workspace.join("sdk").to_str().unwrap()
        );
        assert_eq!(manifest["lib"]["crate-type"][0].as_str(), Some("dylib"));
        let own = &manifest["profile"]["release"]["package"]["sinew-present-sdk"];
        assert_eq!(own["opt-level"].as_str(), Some("s"));
        assert_eq!(
            manifest["profile"]["release"]["strip"].as_bool(),
            Some(true)
        );
        let lib = fs::read_to_string(sdk.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub use sinew::*;"));
        assert!(manifest["profile"]["dev"].get("debug").is_some());
        // kvd is not built for a playbook; serde_json is.
        let packages = &manifest["profile"]["dev"]["package"];
        assert!(packages.get("sinew-kvd").is_none());
        assert!(packages.get("serde_json").is_some());

        let block = scratch.write("3.1", "fn main() {}\n").unwrap();
        assert_eq!(block.name, "slide-d1-3-1");
        assert_eq!(
            fs::read_to_string(block.dir.join("src/main.rs")).unwrap(),
            "fn main() {}\n"
        );
        assert_eq!(block.executable, block.dir.join("slide-d1-3-1"));
    }
}
