//! Kernel modules a guest needs, resolved with their dependencies from each module's
//! own `.modinfo` section (Debian's kernel packages ship no `modules.dep`: depmod
//! writes it at install time).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

/// A loadable module, in the order [`resolve`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Canonical module name (`-` spelled `_`), as `lsmod` shows it.
    pub name: String,
    /// Absolute path of the `.ko` file.
    pub path: PathBuf,
    /// Path relative to the modules directory, e.g. `kernel/drivers/net/virtio_net.ko`
    /// (where it goes under `lib/modules/<release>/` in an initramfs).
    pub rel_path: String,
}

/// The fields of a module's `.modinfo` section that resolution uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// The `name=` field, canonicalised.
    pub name: Option<String>,
    /// The `depends=` field split on commas, canonicalised; empty when none.
    pub depends: Vec<String>,
}

/// Error from [`resolve`] or [`modinfo`].
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The modules directory (or a file in it) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `.ko` file of that name and not built in.
    #[error("kernel module {name} not found in {modules_dir} (no {name}.ko under it and not in modules.builtin)")]
    Unknown {
        /// The module asked for.
        name: String,
        /// Where it was looked for.
        modules_dir: PathBuf,
    },
    /// The module file has no parseable `.modinfo` section.
    #[error("{path} is not a kernel module with a .modinfo section: {reason}")]
    BadModule {
        /// The `.ko` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `depends=` fields form a cycle, which no load order satisfies.
    #[error("kernel module dependency cycle in {modules_dir}: {}", cycle.join(" -> "))]
    Cycle {
        /// The modules on the cycle, the first repeated at the end.
        cycle: Vec<String>,
        /// The modules directory.
        modules_dir: PathBuf,
    },
}

/// A module name as the kernel compares it: `-` and `_` are the same character.
pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the `.modinfo` section of the kernel module file at `path`.
pub fn modinfo(path: &Path) -> Result<ModInfo, ModuleError> {
    let bytes = std::fs::read(path).map_err(|source| ModuleError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_modinfo(&bytes).map_err(|reason| ModuleError::BadModule {
        path: path.to_owned(),
        reason,
    })
}

fn parse_modinfo(ko: &[u8]) -> Result<ModInfo, String> {
    let file = object::File::parse(ko).map_err(|e| e.to_string())?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    let mut info = ModInfo::default();
    // The section is a sequence of NUL-terminated `key=value` strings.
    for field in data.split(|b| *b == 0) {
        let field = String::from_utf8_lossy(field);
        if let Some(name) = field.strip_prefix("name=") {
            info.name = Some(canonical_name(name));
        } else if let Some(deps) = field.strip_prefix("depends=") {
            info.depends = deps
                .split(',')
                .filter(|d| !d.is_empty())
                .map(canonical_name)
                .collect();
        }
    }
    Ok(info)
}

/// Resolves `wanted` modules (any spelling) under `modules_dir` (a
/// `lib/modules/<release>` directory) into load order: every dependency before its
/// users, each module once, deterministic for the same input. Built-in modules
/// (listed in `modules.builtin`) are skipped, as are dependencies on them.
pub fn resolve(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>, ModuleError> {
    let mut resolver = Resolver {
        modules_dir,
        index: index(modules_dir)?,
        builtin: builtin(modules_dir)?,
        done: BTreeSet::new(),
        stack: Vec::new(),
        order: Vec::new(),
    };
    for name in wanted {
        resolver.visit(&canonical_name(name))?;
    }
    Ok(resolver.order)
}

struct Resolver<'a> {
    modules_dir: &'a Path,
    index: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
    done: BTreeSet<String>,
    stack: Vec<String>,
    order: Vec<Module>,
}

impl Resolver<'_> {
    fn visit(&mut self, name: &str) -> Result<(), ModuleError> {
        if self.done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if let Some(at) = self.stack.iter().position(|n| n == name) {
            let mut cycle = self.stack[at..].to_vec();
            cycle.push(name.to_owned());
            return Err(ModuleError::Cycle {
                cycle,
                modules_dir: self.modules_dir.to_owned(),
            });
        }
        let rel_path = self
            .index
            .get(name)
            .cloned()
            .ok_or_else(|| ModuleError::Unknown {
                name: name.to_owned(),
                modules_dir: self.modules_dir.to_owned(),
            })?;
        let path = self.modules_dir.join(&rel_path);
        let info = modinfo(&path)?;
        self.stack.push(name.to_owned());
        for dep in &info.depends {
            self.visit(dep)?;
        }
        self.stack.pop();
        self.done.insert(name.to_owned());
        let name = info.name.unwrap_or_else(|| name.to_owned());
        self.order.push(Module {
            name,
            path,
            rel_path,
        });
        Ok(())
    }
}

/// Maps canonical module names to `.ko` paths relative to `modules_dir`. Walks in
/// sorted order so that, should two directories hold the same name, the choice is
/// stable.
fn index(modules_dir: &Path) -> Result<BTreeMap<String, String>, ModuleError> {
    let mut index = BTreeMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = if rel.as_os_str().is_empty() {
            modules_dir.to_owned()
        } else {
            modules_dir.join(&rel)
        };
        let read_err = |source| ModuleError::Read {
            path: dir.clone(),
            source,
        };
        let mut entries = std::fs::read_dir(&dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err)?;
        entries.sort();
        // Names are kept as UTF-8 strings since they become initramfs paths; the
        // kernel's own tree never has anything else.
        for file_name in entries.iter().rev().filter_map(|n| n.to_str()) {
            let rel_path = rel.join(file_name);
            let file_type = std::fs::symlink_metadata(modules_dir.join(&rel_path))
                .map_err(|source| ModuleError::Read {
                    path: modules_dir.join(&rel_path),
                    source,
                })?
                .file_type();
            if file_type.is_dir() {
                dirs.push(rel_path);
            } else if let (Some(stem), Some(rel_path)) =
                (file_name.strip_suffix(".ko"), rel_path.to_str())
            {
                index
                    .entry(canonical_name(stem))
                    .or_insert_with(|| rel_path.to_owned());
            }
        }
    }
    Ok(index)
}

/// Canonical names of the modules compiled into the kernel.
fn builtin(modules_dir: &Path) -> Result<BTreeSet<String>, ModuleError> {
    let path = modules_dir.join("modules.builtin");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(source) => return Err(ModuleError::Read { path, source }),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            Path::new(line.trim())
                .file_name()?
                .to_str()?
                .strip_suffix(".ko")
                .map(canonical_name)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testelf::kmod;
    use object::elf::EM_X86_64;

    /// Writes a module tree: `(rel_path, name, depends)`.
    fn tree(modules: &[(&str, &str, &str)], builtin: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, name, deps) in modules {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let fields = [
                format!("name={name}"),
                format!("depends={deps}"),
                "license=GPL".into(),
            ];
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            std::fs::write(path, kmod(EM_X86_64, &fields)).unwrap();
        }
        std::fs::write(dir.path().join("modules.builtin"), builtin).unwrap();
        dir
    }

    fn names(modules: &[Module]) -> Vec<&str> {
        modules.iter().map(|m| m.name.as_str()).collect()
    }

    fn virtio_tree() -> tempfile::TempDir {
        tree(
            &[
                ("kernel/drivers/virtio/virtio_ring.ko", "virtio_ring", ""),
                ("kernel/drivers/virtio/virtio.ko", "virtio", "virtio_ring"),
                (
                    "kernel/drivers/virtio/virtio_mmio.ko",
                    "virtio_mmio",
                    "virtio_ring,virtio",
                ),
                ("kernel/net/core/failover.ko", "failover", ""),
                (
                    "kernel/drivers/net/net_failover.ko",
                    "net_failover",
                    "failover",
                ),
                (
                    "kernel/drivers/net/virtio_net.ko",
                    "virtio_net",
                    "virtio_ring,virtio,net_failover",
                ),
                (
                    "kernel/drivers/char/hw_random/virtio-rng.ko",
                    "virtio_rng",
                    "virtio,virtio_ring,rng-core",
                ),
            ],
            "kernel/drivers/char/hw_random/rng-core.ko\nkernel/fs/binfmt_script.ko\n",
        )
    }

    #[test]
    fn dependencies_come_first_each_once() {
        let dir = virtio_tree();
        let got = resolve(dir.path(), &["virtio_mmio", "virtio-net"]).unwrap();
        assert_eq!(
            names(&got),
            [
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        assert_eq!(got[5].rel_path, "kernel/drivers/net/virtio_net.ko");
        assert_eq!(
            got[5].path,
            dir.path().join("kernel/drivers/net/virtio_net.ko")
        );
        assert_eq!(
            resolve(dir.path(), &["virtio_mmio", "virtio-net"]).unwrap(),
            got
        );
    }

    #[test]
    fn dashes_and_underscores_match_and_builtins_are_skipped() {
        let dir = virtio_tree();
        let got = resolve(dir.path(), &["virtio_rng", "binfmt-script"]).unwrap();
        assert_eq!(names(&got), ["virtio_ring", "virtio", "virtio_rng"]);
        assert_eq!(
            got[2].rel_path,
            "kernel/drivers/char/hw_random/virtio-rng.ko"
        );
    }

    #[test]
    fn unknown_module_names_module_and_dir() {
        let dir = virtio_tree();
        let err = resolve(dir.path(), &["vxlan"]).unwrap_err().to_string();
        assert!(
            err.contains("vxlan") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn missing_dependency_is_an_error() {
        let dir = tree(&[("kernel/a.ko", "a", "b")], "");
        assert!(
            matches!(resolve(dir.path(), &["a"]), Err(ModuleError::Unknown { name, .. }) if name == "b")
        );
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let dir = tree(
            &[
                ("kernel/a.ko", "a", "b"),
                ("kernel/b.ko", "b", "c"),
                ("kernel/c.ko", "c", "a"),
            ],
            "",
        );
        let err = resolve(dir.path(), &["a"]).unwrap_err().to_string();
        assert!(err.contains("a -> b -> c -> a"), "{err}");
    }

    #[test]
    fn non_module_files_are_refused_with_their_path() {
        let dir = tree(&[], "");
        std::fs::write(dir.path().join("junk.ko"), b"not elf").unwrap();
        let err = resolve(dir.path(), &["junk"]).unwrap_err().to_string();
        assert!(err.contains("junk.ko"), "{err}");
    }

    #[test]
    fn modinfo_reads_name_and_depends() {
        let ko = kmod(
            EM_X86_64,
            &[
                "license=GPL",
                "depends=virtio-ring,virtio",
                "name=virtio_net",
                "vermagic=6.1.0",
            ],
        );
        let info = parse_modinfo(&ko).unwrap();
        assert_eq!(info.name.as_deref(), Some("virtio_net"));
        assert_eq!(info.depends, ["virtio_ring", "virtio"]);
        assert_eq!(
            parse_modinfo(&kmod(EM_X86_64, &["depends="]))
                .unwrap()
                .depends,
            Vec::<String>::new()
        );
    }
}
