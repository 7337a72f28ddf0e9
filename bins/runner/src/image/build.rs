//! Building OCI image layouts from static binaries: one gzip layer per architecture holding
//! the binary and the extra files, one manifest per architecture (under an image index when
//! there are several), all deterministic: sorted entries, zero mtimes and owners, no
//! timestamps in the JSON, so the same input gives the same digests.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::{Compression, GzBuilder};
use sequoia_openpgp::Cert;
use serde::Serialize;

use super::digest::Digest;
use super::oci::{
    Descriptor, ExecConfig, ImageConfig, Index, Manifest, Platform, RootFs, ANNOTATION_REF_NAME,
    MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_MANIFEST,
};
use super::platform::{arch_of_elf_machine, elf_machine, oci_arch, ArchError};
use crate::signing::{sign_detached, SignError};

/// Why an image could not be built or signed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No binary was given.
    #[error("image {0}: no binary given; pass at least one --arch ARCH=PATH")]
    NoBinary(String),
    /// The same architecture was given twice.
    #[error("image {name}: architecture {arch} given twice")]
    DuplicateArch {
        /// The image name.
        name: String,
        /// The architecture.
        arch: String,
    },
    /// The binary is not an ELF executable.
    #[error("{path} is not an ELF executable; --arch expects a (static) binary")]
    NotElf {
        /// The binary.
        path: PathBuf,
    },
    /// The binary is built for another machine than the architecture it was given for.
    #[error("{path} is built for {found}, not for {expected}")]
    WrongArch {
        /// The binary.
        path: PathBuf,
        /// The architecture it was given for.
        expected: String,
        /// What its ELF header says.
        found: String,
    },
    /// A destination path inside the image is not absolute or holds `..`.
    #[error("destination {0:?} must be an absolute path inside the image without '..' (e.g. /etc/app.conf)")]
    BadDestination(String),
    /// An input file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadInput {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The output layout could not be written.
    #[error("cannot write image layout {path}: {source}")]
    WriteOutput {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The layout to sign does not have exactly one top-level manifest.
    #[error("{path}: index.json must list exactly one manifest to sign, found {count}")]
    NotSignable {
        /// The layout.
        path: PathBuf,
        /// How many it lists.
        count: usize,
    },
    /// The layout's index.json does not parse.
    #[error("{path}: invalid index.json: {reason}")]
    BadIndex {
        /// The layout.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The architecture name is unknown.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A file copied into the image.
#[derive(Debug, Clone)]
pub struct ExtraFile {
    /// The file on the build host.
    pub source: PathBuf,
    /// Its absolute path inside the image.
    pub dest: String,
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildSpec {
    /// The full image name, recorded as the `org.opencontainers.image.ref.name` annotation.
    pub name: String,
    /// `(architecture, static binary)` pairs; either spelling (`x86_64` or `amd64`).
    pub binaries: Vec<(String, PathBuf)>,
    /// Where the binary goes inside the image; default `/bin/<file name of the first binary>`.
    pub binary_dest: Option<String>,
    /// Extra files, the same for every architecture.
    pub files: Vec<ExtraFile>,
    /// `Entrypoint`; default `[binary_dest]`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// The layout directory to write.
    pub out: PathBuf,
}

/// A built layout.
#[derive(Debug, Clone)]
pub struct Built {
    /// The layout directory.
    pub layout: PathBuf,
    /// Digest of the top-level blob (the one that gets signed).
    pub top_digest: Digest,
    /// `(OCI architecture, manifest digest)` per architecture.
    pub manifests: Vec<(String, Digest)>,
}

/// Builds the layout described by `spec`.
pub fn build(spec: &BuildSpec) -> Result<Built, BuildError> {
    let (_, first) = spec
        .binaries
        .first()
        .ok_or_else(|| BuildError::NoBinary(spec.name.clone()))?;
    let binary_dest = match &spec.binary_dest {
        Some(dest) => dest.clone(),
        None => format!(
            "/bin/{}",
            first
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ),
    };
    let layout = Layout::create(&spec.out)?;
    let mut manifests: Vec<(String, Descriptor)> = Vec::new();
    for (arch, binary) in &spec.binaries {
        let arch = oci_arch(arch)?;
        check_elf_machine(binary, arch)?;
        if manifests.iter().any(|(a, _)| a == arch) {
            return Err(BuildError::DuplicateArch {
                name: spec.name.clone(),
                arch: arch.to_owned(),
            });
        }
        let mut files = vec![ExtraFile {
            source: binary.clone(),
            dest: binary_dest.clone(),
        }];
        files.extend(spec.files.iter().cloned());
        let (tar, diff_id) = layer_tar(&files, &binary_dest)?;
        let layer = layout.write_blob(MEDIA_LAYER_GZIP, &gzip(&tar, &spec.out)?)?;
        let config = ImageConfig {
            architecture: arch.to_owned(),
            os: "linux".to_owned(),
            config: ExecConfig {
                user: spec.user.clone(),
                env: Some(spec.env.clone()),
                entrypoint: Some(
                    spec.entrypoint
                        .clone()
                        .unwrap_or_else(|| vec![binary_dest.clone()]),
                ),
                cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
                working_dir: spec.working_dir.clone(),
            },
            rootfs: RootFs {
                kind: "layers".to_owned(),
                diff_ids: vec![diff_id.to_string()],
            },
        };
        let config = layout.write_json(MEDIA_CONFIG, &config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.to_owned()),
            config,
            layers: vec![layer],
        };
        let mut descriptor = layout.write_json(MEDIA_MANIFEST, &manifest)?;
        descriptor.platform = Some(Platform {
            architecture: arch.to_owned(),
            os: "linux".to_owned(),
            variant: None,
        });
        manifests.push((arch.to_owned(), descriptor));
    }
    let mut top = if let [(_, only)] = manifests.as_slice() {
        only.clone()
    } else {
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.to_owned()),
            manifests: manifests.iter().map(|(_, d)| d.clone()).collect(),
        };
        layout.write_json(MEDIA_INDEX, &index)?
    };
    top.annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), spec.name.clone());
    let top_digest = parse_own_digest(&top.digest);
    layout.write_index(&top)?;
    Ok(Built {
        layout: spec.out.clone(),
        top_digest,
        manifests: manifests
            .into_iter()
            .map(|(arch, d)| (arch, parse_own_digest(&d.digest)))
            .collect(),
    })
}

/// Signs the top-level blob of the layout at `layout` with `cert` and writes the armored
/// detached signature to `<layout>.asc`; returns that path.
pub fn sign_layout(layout: &Path, cert: &Cert) -> Result<PathBuf, BuildError> {
    let index_path = layout.join("index.json");
    let bytes = fs::read(&index_path).map_err(|source| BuildError::ReadInput {
        path: index_path.clone(),
        source,
    })?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| BuildError::BadIndex {
        path: layout.to_owned(),
        reason: e.to_string(),
    })?;
    let [top] = index.manifests.as_slice() else {
        return Err(BuildError::NotSignable {
            path: layout.to_owned(),
            count: index.manifests.len(),
        });
    };
    let digest = Digest::parse(&top.digest).map_err(|e| BuildError::BadIndex {
        path: layout.to_owned(),
        reason: e.to_string(),
    })?;
    let blob_path = layout.join("blobs/sha256").join(digest.hex());
    let blob = fs::read(&blob_path).map_err(|source| BuildError::ReadInput {
        path: blob_path,
        source,
    })?;
    let signature = sign_detached(cert, &blob)?;
    let out = signature_path(layout);
    fs::write(&out, signature).map_err(|source| BuildError::WriteOutput {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

/// Checks the ELF header's `e_machine` (little- or big-endian, per `EI_DATA`) against `arch`.
fn check_elf_machine(binary: &Path, arch: &str) -> Result<(), BuildError> {
    let mut header = [0u8; 20];
    fs::File::open(binary)
        .and_then(|mut file| io::Read::read_exact(&mut file, &mut header))
        .map_err(|source| match source.kind() {
            io::ErrorKind::UnexpectedEof => BuildError::NotElf {
                path: binary.to_owned(),
            },
            _ => BuildError::ReadInput {
                path: binary.to_owned(),
                source,
            },
        })?;
    if header[..4] != *b"\x7fELF" {
        return Err(BuildError::NotElf {
            path: binary.to_owned(),
        });
    }
    let bytes = [header[18], header[19]];
    let machine = if header[5] == 2 {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    };
    if elf_machine(arch) == Some(machine) {
        return Ok(());
    }
    Err(BuildError::WrongArch {
        path: binary.to_owned(),
        expected: arch.to_owned(),
        found: arch_of_elf_machine(machine)
            .map_or_else(|| format!("ELF machine {machine}"), str::to_owned),
    })
}

/// `<layout>.asc`.
fn signature_path(layout: &Path) -> PathBuf {
    let mut name = layout.as_os_str().to_owned();
    name.push(".asc");
    PathBuf::from(name)
}

/// Digests this module computed itself are always well formed.
fn parse_own_digest(text: &str) -> Digest {
    Digest::parse(text).unwrap_or_else(|_| Digest::of(text.as_bytes()))
}

struct Layout<'a> {
    dir: &'a Path,
}

impl<'a> Layout<'a> {
    fn create(dir: &'a Path) -> Result<Layout<'a>, BuildError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|source| BuildError::WriteOutput {
            path: blobs,
            source,
        })?;
        let layout = Layout { dir };
        layout.write_file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(layout)
    }

    fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, BuildError> {
        let digest = Digest::of(bytes);
        self.write_file(&format!("blobs/sha256/{}", digest.hex()), bytes)?;
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_string(),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        })
    }

    fn write_json(
        &self,
        media_type: &str,
        value: &impl Serialize,
    ) -> Result<Descriptor, BuildError> {
        let bytes = serde_json::to_vec(value).map_err(|e| BuildError::WriteOutput {
            path: self.dir.to_owned(),
            source: e.into(),
        })?;
        self.write_blob(media_type, &bytes)
    }

    fn write_index(&self, top: &Descriptor) -> Result<(), BuildError> {
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.to_owned()),
            manifests: vec![top.clone()],
        };
        let bytes = serde_json::to_vec(&index).map_err(|e| BuildError::WriteOutput {
            path: self.dir.to_owned(),
            source: e.into(),
        })?;
        self.write_file("index.json", &bytes)
    }

    fn write_file(&self, relative: &str, bytes: &[u8]) -> Result<(), BuildError> {
        let path = self.dir.join(relative);
        fs::write(&path, bytes).map_err(|source| BuildError::WriteOutput { path, source })
    }
}

enum Entry {
    Dir,
    File { source: PathBuf, mode: u32 },
}

/// The uncompressed layer and its digest (the config's diff_id).
fn layer_tar(files: &[ExtraFile], binary_dest: &str) -> Result<(Vec<u8>, Digest), BuildError> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for file in files {
        let relative = image_path(&file.dest)?;
        let mut parent = Path::new(&relative).parent();
        while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
            entries.insert(dir.to_string_lossy().into_owned(), Entry::Dir);
            parent = dir.parent();
        }
        let meta = fs::metadata(&file.source).map_err(|source| BuildError::ReadInput {
            path: file.source.clone(),
            source,
        })?;
        let mode = if file.dest == binary_dest {
            0o755
        } else {
            meta.permissions().mode() & 0o755
        };
        entries.insert(
            relative,
            Entry::File {
                source: file.source.clone(),
                mode,
            },
        );
    }
    let mut builder = tar::Builder::new(Vec::new());
    for (path, entry) in &entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let write_err = |source| BuildError::WriteOutput {
            path: PathBuf::from(path),
            source,
        };
        match entry {
            Entry::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{path}/"), io::empty())
                    .map_err(write_err)?;
            }
            Entry::File { source, mode } => {
                let bytes = fs::read(source).map_err(|e| BuildError::ReadInput {
                    path: source.clone(),
                    source: e,
                })?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, path, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
    }
    let tar = builder
        .into_inner()
        .map_err(|source| BuildError::WriteOutput {
            path: PathBuf::from("layer"),
            source,
        })?;
    let digest = Digest::of(&tar);
    Ok((tar, digest))
}

fn gzip(bytes: &[u8], out: &Path) -> Result<Vec<u8>, BuildError> {
    let write_err = |source| BuildError::WriteOutput {
        path: out.to_owned(),
        source,
    };
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    encoder.write_all(bytes).map_err(write_err)?;
    encoder.finish().map_err(write_err)
}

/// `/usr/bin/app` → `usr/bin/app`, refusing relative paths and `..`.
fn image_path(dest: &str) -> Result<String, BuildError> {
    let bad = || BuildError::BadDestination(dest.to_owned());
    let path = Path::new(dest);
    if !path.is_absolute() {
        return Err(bad());
    }
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => parts.push(name.to_str().ok_or_else(bad)?.to_owned()),
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts.join("/"))
}
