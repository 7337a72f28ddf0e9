//! Fetching an image: read the layout's `index.json`, pick the top-level blob, check its
//! detached signature, follow digests down to the config and layers (each checked while
//! staged), render the root filesystem, then publish blobs, rootfs and record under the store
//! lock. Nothing reaches the store before every check has passed.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::digest::{Digest, DigestError};
use super::oci::{self, Descriptor, ImageConfig, Index, Manifest, ANNOTATION_REF_NAME};
use super::platform::{host_arch, oci_arch, ArchError};
use super::source::{
    default_signature_location, read_signature, Source, SourceError, MAX_DOCUMENT,
};
use super::store::{ImageRecord, RuntimeConfig, Store, StoreError};
use super::unpack::{apply_layer, UnpackError};
use crate::signing::{verify_detached, VerifyError};
use crate::trust::{ImageName, KeyStore, PrefixError, TrustError};

/// What to fetch and how.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Layout directory, archive, or `http://` / `https://` URL of either.
    pub source: String,
    /// Image name; default: the `org.opencontainers.image.ref.name` annotation when it is a
    /// full name.
    pub name: Option<String>,
    /// Signature path or URL; default `<source>.asc`.
    pub signature: Option<String>,
    /// Skip signature verification (`--insecure-options=image`). Digests are still checked.
    pub insecure_skip_verify: bool,
    /// Architecture to pick from an image index; default: the host's.
    pub arch: Option<String>,
    /// PEM files of CA certificates trusted for `https://` besides the system roots.
    pub ca_certs: Vec<PathBuf>,
}

/// Why a fetch was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No signature exists at the signature location.
    #[error("image {image} is unsigned: no signature at {location} (pass --signature, or --insecure-options=image to skip verification)")]
    Unsigned {
        /// The image name.
        image: String,
        /// Where the signature was looked for.
        location: String,
    },
    /// The signature did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A blob's content does not match the digest that names it.
    #[error("image {image}: {what} was tampered with or damaged: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The image name.
        image: String,
        /// Which blob ("manifest", "config", "layer 1 of 2", …).
        what: String,
        /// The digest it is referenced by.
        expected: String,
        /// The digest of its content.
        actual: String,
    },
    /// No `--name` and no full name in the layout's annotations.
    #[error("image from {origin} has no full name (no org.opencontainers.image.ref.name containing '/'); pass --name")]
    NoName {
        /// The image source.
        origin: String,
    },
    /// `index.json` lists no manifest, or several without a way to choose.
    #[error("{origin}: index.json lists {count} manifests ({}); pass --name matching one ref.name", .names.join(", "))]
    AmbiguousLayout {
        /// The image source.
        origin: String,
        /// How many manifests it lists.
        count: usize,
        /// Their ref.name annotations.
        names: Vec<String>,
    },
    /// The image index has no manifest for the wanted platform.
    #[error("image {image} has no linux/{arch} manifest; available: {}", .available.join(", "))]
    NoPlatform {
        /// The image name.
        image: String,
        /// The wanted architecture.
        arch: String,
        /// The platforms it offers.
        available: Vec<String>,
    },
    /// A JSON document does not parse as what it should be.
    #[error("image {image}: {what} is not a valid OCI document: {reason}")]
    BadDocument {
        /// The image name (or source).
        image: String,
        /// Which document.
        what: String,
        /// What the parser said.
        reason: String,
    },
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The image name is malformed.
    #[error(transparent)]
    Name(#[from] PrefixError),
    /// The keystore could not be read.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A layer could not be rendered.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A digest is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The architecture is unknown.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing into the staging directory failed.
    #[error("staging {path}: {source}")]
    Staging {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Fetches, verifies, renders and records an image; returns its record.
pub fn fetch(
    store: &Store,
    keys: &KeyStore,
    options: &FetchOptions,
) -> Result<ImageRecord, FetchError> {
    let staging = store.staging()?;
    let source = Source::open(&options.source, staging.path(), &options.ca_certs)?;
    let layout: Index = parse(&options.source, "index.json", &source.index_json()?)?;
    let top = select_top(&options.source, &layout, options.name.as_deref())?;
    let name = image_name(&options.source, top, options.name.as_deref())?;
    let fetch = Fetch {
        store,
        source: &source,
        staging: staging.path(),
        image: name.as_str().to_owned(),
        staged: Vec::new(),
    };
    fetch.run(keys, options, top)
}

/// What rendering a manifest needs: where to render, the staged layers, the config bytes.
struct Rendering<'a> {
    dir: &'a Path,
    layers: &'a [(PathBuf, &'a Descriptor)],
    diff_ids: &'a [String],
    config: &'a [u8],
}

struct Fetch<'a> {
    store: &'a Store,
    source: &'a Source,
    staging: &'a Path,
    image: String,
    staged: Vec<(Digest, u64, PathBuf)>,
}

impl Fetch<'_> {
    fn run(
        mut self,
        keys: &KeyStore,
        options: &FetchOptions,
        top: &Descriptor,
    ) -> Result<ImageRecord, FetchError> {
        let top_bytes = self.stage_document(top, "top-level manifest")?;
        let signed_by = if options.insecure_skip_verify {
            None
        } else {
            Some(self.verify(keys, options, &top_bytes)?)
        };
        let (manifest_desc, manifest_bytes, architecture) =
            self.pick_manifest(options, top, top_bytes)?;
        let manifest: Manifest = parse(&self.image, "manifest", &manifest_bytes)?;
        let config_bytes = self.stage_document(&manifest.config, "config")?;
        let config: ImageConfig = parse(&self.image, "config", &config_bytes)?;
        let layers = self.stage_layers(&manifest, &config)?;
        let manifest_digest = Digest::parse(&manifest_desc.digest)?;
        let render_dir = self.staging.join("render");
        let rendering = Rendering {
            dir: &render_dir,
            layers: &layers,
            diff_ids: &config.rootfs.diff_ids,
            config: &config_bytes,
        };
        if !self.store.rootfs_dir(&manifest_digest).is_dir() {
            self.render(&rendering)?;
        }
        let record = ImageRecord {
            name: self.image.clone(),
            manifest_digest: manifest_digest.to_string(),
            top_digest: top.digest.clone(),
            architecture: architecture.unwrap_or_else(|| config.architecture.clone()),
            size: self.staged.iter().map(|(_, size, _)| size).sum(),
            fetched_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            signed_by,
            blobs: self
                .staged
                .iter()
                .map(|(digest, _, _)| digest.to_string())
                .collect(),
            config: runtime_config(&config),
        };
        self.commit(&record, &manifest_digest, &rendering)?;
        Ok(record)
    }

    /// The image manifest: the top-level blob itself, or the entry of the top-level index for
    /// the wanted architecture (returned too, as the index is what names it).
    fn pick_manifest(
        &mut self,
        options: &FetchOptions,
        top: &Descriptor,
        top_bytes: Vec<u8>,
    ) -> Result<(Descriptor, Vec<u8>, Option<String>), FetchError> {
        if !is_index(top, &top_bytes) {
            return Ok((top.clone(), top_bytes, None));
        }
        let index: Index = parse(&self.image, "image index", &top_bytes)?;
        let arch = match &options.arch {
            Some(arch) => oci_arch(arch)?,
            None => host_arch()?,
        };
        let chosen = self.select_platform(&index, arch)?.clone();
        let bytes = self.stage_document(&chosen, "manifest")?;
        Ok((chosen, bytes, Some(arch.to_owned())))
    }

    /// Stages every layer, after checking the config has one diff_id per layer.
    fn stage_layers<'m>(
        &mut self,
        manifest: &'m Manifest,
        config: &ImageConfig,
    ) -> Result<Vec<(PathBuf, &'m Descriptor)>, FetchError> {
        let count = manifest.layers.len();
        if config.rootfs.diff_ids.len() != count {
            return Err(FetchError::BadDocument {
                image: self.image.clone(),
                what: "config".to_owned(),
                reason: format!(
                    "it lists {} diff_ids for {count} layers",
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (index, layer) in manifest.layers.iter().enumerate() {
            let path = self.stage(layer, &format!("layer {} of {count}", index + 1))?;
            layers.push((path, layer));
        }
        Ok(layers)
    }

    fn verify(
        &self,
        keys: &KeyStore,
        options: &FetchOptions,
        signed: &[u8],
    ) -> Result<String, FetchError> {
        let location = options
            .signature
            .clone()
            .unwrap_or_else(|| default_signature_location(&options.source));
        let Some(signature) = read_signature(&location, &options.ca_certs)? else {
            return Err(FetchError::Unsigned {
                image: self.image.clone(),
                location,
            });
        };
        let name = ImageName::parse(&self.image)?;
        let trusted = keys.trusted_for(&name)?;
        let known = keys.list()?;
        let fingerprint = verify_detached(&self.image, signed, &signature, &trusted, &known)?;
        tracing::debug!(image = %self.image, key = %fingerprint, signature = %location, "signature verified");
        Ok(fingerprint)
    }

    fn select_platform<'i>(
        &self,
        index: &'i Index,
        arch: &str,
    ) -> Result<&'i Descriptor, FetchError> {
        index
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .ok_or_else(|| FetchError::NoPlatform {
                image: self.image.clone(),
                arch: arch.to_owned(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| match &p.variant {
                        Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    })
                    .collect(),
            })
    }

    /// Stages a small JSON blob and returns its bytes.
    fn stage_document(
        &mut self,
        descriptor: &Descriptor,
        what: &str,
    ) -> Result<Vec<u8>, FetchError> {
        let limited = Descriptor {
            size: descriptor.size.min(MAX_DOCUMENT),
            ..descriptor.clone()
        };
        let path = self.stage(&limited, what)?;
        fs::read(&path).map_err(|source| FetchError::Staging { path, source })
    }

    /// Copies a blob into the staging directory (from the store when present there, else from
    /// the source), checking its digest.
    fn stage(&mut self, descriptor: &Descriptor, what: &str) -> Result<PathBuf, FetchError> {
        let digest = Digest::parse(&descriptor.digest)?;
        let path = self.staging.join(format!("blob-{}", digest.hex()));
        let staging_err = |source| FetchError::Staging {
            path: path.clone(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(staging_err)?;
        let actual = if self.store.blobs().contains(&digest) {
            self.store
                .blobs()
                .copy_verified(&digest, &mut file)
                .map_err(StoreError::from)?;
            digest.clone()
        } else {
            self.source.copy_blob(&digest, &mut file, descriptor.size)?
        };
        if actual != digest {
            return Err(FetchError::DigestMismatch {
                image: self.image.clone(),
                what: what.to_owned(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        file.sync_all().map_err(staging_err)?;
        let size = file.metadata().map_err(staging_err)?.len();
        tracing::debug!(image = %self.image, blob = %digest, size, what, "blob staged and its digest checked");
        if !self.staged.iter().any(|(d, _, _)| *d == digest) {
            self.staged.push((digest, size, path.clone()));
        }
        Ok(path)
    }

    fn render(&self, rendering: &Rendering<'_>) -> Result<(), FetchError> {
        let Rendering {
            dir,
            layers,
            diff_ids,
            config,
        } = rendering;
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(|source| FetchError::Staging {
            path: rootfs.clone(),
            source,
        })?;
        for ((path, layer), diff_id) in layers.iter().zip(diff_ids.iter()) {
            tracing::debug!(image = %self.image, layer = %layer.digest, "applying layer");
            apply_layer(&rootfs, path, &layer.media_type, &layer.digest, diff_id)?;
        }
        let config_path = dir.join("config.json");
        fs::write(&config_path, config).map_err(|source| FetchError::Staging {
            path: config_path,
            source,
        })
    }

    /// Publishes blobs, the rendered rootfs and the record under the exclusive store lock. A
    /// rendering skipped because the rootfs existed is done now if `gc` removed it meanwhile.
    fn commit(
        &self,
        record: &ImageRecord,
        manifest: &Digest,
        rendering: &Rendering<'_>,
    ) -> Result<(), FetchError> {
        let _lock = self.store.lock(true)?;
        for (digest, _, path) in &self.staged {
            self.store
                .blobs()
                .adopt(digest, path)
                .map_err(StoreError::from)?;
        }
        let rootfs = self.store.rootfs_dir(manifest);
        if !rootfs.is_dir() {
            if !rendering.dir.is_dir() {
                self.render(rendering)?;
            }
            fs::rename(rendering.dir, &rootfs).map_err(|source| FetchError::Staging {
                path: rootfs,
                source,
            })?;
        }
        self.store.write_record(record)?;
        Ok(())
    }
}

/// Picks the manifest the layout's `index.json` points at: the only one, or the one whose
/// ref.name equals `--name` (or its tag).
fn select_top<'i>(
    source: &str,
    layout: &'i Index,
    name: Option<&str>,
) -> Result<&'i Descriptor, FetchError> {
    if let [only] = layout.manifests.as_slice() {
        return Ok(only);
    }
    let ref_name = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
    let tag = name.and_then(|n| n.rsplit_once(':').map(|(_, tag)| tag));
    name.and_then(|wanted| {
        layout
            .manifests
            .iter()
            .find(|d| ref_name(d).is_some_and(|r| r == wanted || Some(r.as_str()) == tag))
    })
    .ok_or_else(|| FetchError::AmbiguousLayout {
        origin: source.to_owned(),
        count: layout.manifests.len(),
        names: layout.manifests.iter().filter_map(ref_name).collect(),
    })
}

fn image_name(source: &str, top: &Descriptor, name: Option<&str>) -> Result<ImageName, FetchError> {
    let chosen = match name {
        Some(name) => name.to_owned(),
        None => top
            .annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| n.contains('/'))
            .cloned()
            .ok_or_else(|| FetchError::NoName {
                origin: source.to_owned(),
            })?,
    };
    Ok(ImageName::parse(&chosen)?)
}

fn is_index(descriptor: &Descriptor, bytes: &[u8]) -> bool {
    if oci::is_index_media_type(&descriptor.media_type) {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| {
        p.media_type
            .as_deref()
            .is_some_and(oci::is_index_media_type)
            || p.manifests.is_some()
    })
}

fn parse<T: DeserializeOwned>(image: &str, what: &str, bytes: &[u8]) -> Result<T, FetchError> {
    serde_json::from_slice(bytes).map_err(|e| FetchError::BadDocument {
        image: image.to_owned(),
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn runtime_config(config: &ImageConfig) -> RuntimeConfig {
    let exec = &config.config;
    RuntimeConfig {
        entrypoint: exec.entrypoint.clone().unwrap_or_default(),
        cmd: exec.cmd.clone().unwrap_or_default(),
        env: exec.env.clone().unwrap_or_default(),
        working_dir: exec.working_dir.clone().filter(|w| !w.is_empty()),
        user: exec.user.clone().filter(|u| !u.is_empty()),
    }
}
