//! Machine images, Packer's job for machines that boot rather than get patched: a kernel, an
//! initramfs holding sinew-init, the run's own cross-compiled binaries and configuration
//! rendered from templates, and the kernel arguments, for each architecture.
//!
//! An image is described by its manifest (name, version, architecture, the digest and size of
//! each part, the arguments), stored under the manifest's sha256, its id. Building is
//! reproducible: the initramfs is written with sorted entries and fixed times, so the same
//! inputs give the same digest for every part and the same id. The manifest is signed with
//! an OpenPGP key (the same keys as container images); [`MachineImage::verify`] checks it,
//! and the boot server refuses to serve a part whose digest is not the manifest's.
//! Inside, `/etc/sinew/image.json` names the image, and the agent reports it in its facts.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use sinew_proto::{ImageLabel, Sha256Digest};
use sinew_runner::signing;
use sinew_runner::trust::{TrustScope, TrustedKey};
use sinew_vm::kernel::Kernel;
use thiserror::Error;

use crate::build::{Artifacts, Build, BuildError};
use crate::image::SigningKey;
use crate::lab::{guest_initramfs, LabError};
use crate::outcome::{Outcome, Status, TaskFailed};
use crate::stored::store_once;
use crate::{Arch, Run};

/// What a machine image holds, for which architectures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineImageSpec {
    /// The image's name (letters, digits, `.`, `_` and `-`).
    pub name: String,
    /// Its version (same characters).
    pub version: String,
    /// The architectures to build it for (default: both).
    pub archs: Vec<Arch>,
    /// Binaries of the workspace, cross-compiled by the run, and their absolute paths in the
    /// image.
    pub bins: Vec<(String, String)>,
    /// Files rendered from tera templates (absolute path, template), with `vars` and
    /// `image.name`, `image.version`, `image.arch` in their context.
    pub templates: Vec<(String, String)>,
    /// Variables for the templates.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Kernel modules beyond those every guest has, with their dependencies.
    pub modules: Vec<String>,
    /// Kernel arguments of the image (the machine's own, such as its addresses, are added
    /// by whoever boots it).
    pub args: Vec<String>,
    /// Build every architecture even when one fails (default: the first failure stops the
    /// others).
    pub keep_going: bool,
}

impl MachineImageSpec {
    /// An image called `name` at `version` for both architectures, holding only the agent.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            archs: Arch::ALL.to_vec(),
            bins: Vec::new(),
            templates: Vec::new(),
            vars: serde_json::Map::new(),
            modules: Vec::new(),
            args: Vec::new(),
            keep_going: false,
        }
    }

    /// Builds it for `archs` only.
    pub fn archs(mut self, archs: &[Arch]) -> Self {
        self.archs = archs.to_vec();
        self
    }

    /// Puts the workspace binary `bin` at `path`.
    pub fn bin(mut self, bin: &str, path: &str) -> Self {
        self.bins.push((bin.to_owned(), path.to_owned()));
        self
    }

    /// Renders `template` (tera) to `path`.
    pub fn template(mut self, path: &str, template: &str) -> Self {
        self.templates.push((path.to_owned(), template.to_owned()));
        self
    }

    /// Sets the template variable `key`.
    pub fn var(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    /// Adds the kernel module `module`.
    pub fn module(mut self, module: &str) -> Self {
        self.modules.push(module.to_owned());
        self
    }

    /// Adds the kernel argument `arg`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Builds every architecture even when one fails.
    pub fn keep_going(mut self) -> Self {
        self.keep_going = true;
        self
    }

    fn check(&self) -> Result<(), MachineImageError> {
        let bad = |field: &str, reason: String| MachineImageError::Spec {
            image: self.name.clone(),
            field: field.to_owned(),
            reason,
        };
        for (field, value) in [("name", &self.name), ("version", &self.version)] {
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if value.is_empty() || !value.chars().all(plain) {
                return Err(bad(
                    field,
                    format!("{value:?} must be letters, digits, '.', '_' and '-'"),
                ));
            }
        }
        if self.archs.is_empty() {
            return Err(bad("archs", "no architecture".into()));
        }
        let mut paths = BTreeSet::new();
        let files = self.bins.iter().map(|(_, p)| p);
        for path in files.chain(self.templates.iter().map(|(p, _)| p)) {
            if !path.starts_with('/') || path.ends_with('/') || path.contains("/../") {
                return Err(bad(
                    "path",
                    format!("{path:?} is not an absolute file path"),
                ));
            }
            if path == "/init" || path == ImageLabel::PATH || path == "/etc/sinew/modules" {
                return Err(bad("path", format!("{path} belongs to sinew-init")));
            }
            if !paths.insert(path) {
                return Err(bad("path", format!("{path} is given twice")));
            }
        }
        Ok(())
    }
}

/// One part of an image, stored by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePart {
    /// Its sha256.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// What an image is, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The image's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The architecture (`uname -m` form).
    pub arch: String,
    /// The kernel's release.
    pub kernel_release: String,
    /// The kernel.
    pub kernel: ImagePart,
    /// The initramfs.
    pub initrd: ImagePart,
    /// The image's kernel arguments.
    pub args: Vec<String>,
}

/// A built, signed machine image for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineImage {
    /// What it is.
    pub manifest: Manifest,
    /// Its architecture.
    pub arch: Arch,
    /// Its id: the sha256 of its manifest.
    pub id: Sha256Digest,
    /// The stored kernel.
    pub kernel: PathBuf,
    /// The stored initramfs.
    pub initrd: PathBuf,
    /// The stored manifest (`manifest.json`) ...
    pub manifest_path: PathBuf,
    /// ... and its detached signature (`<fingerprint>.asc` beside it).
    pub signature: PathBuf,
    /// The fingerprint of the key that signed it.
    pub signer: String,
    new: bool,
}

impl MachineImage {
    /// `name version (arch)`.
    pub fn label(&self) -> String {
        format!(
            "{} {} ({})",
            self.manifest.name, self.manifest.version, self.arch
        )
    }

    /// Checks that the stored manifest is this image's and that its signature verifies
    /// against `key`.
    pub fn verify(&self, key: &SigningKey) -> Result<Verified, MachineImageError> {
        let manifest = fs::read(&self.manifest_path).map_err(io("reading", &self.manifest_path))?;
        if Sha256Digest::of(&manifest) != self.id {
            return Err(MachineImageError::Tampered {
                image: self.label(),
                what: self.manifest_path.clone(),
            });
        }
        let signature = fs::read(&self.signature).map_err(io("reading", &self.signature))?;
        let public = key.cert().clone().strip_secret_key_material();
        let trusted = TrustedKey::new(TrustScope::Root, public);
        signing::verify_detached(&self.label(), &manifest, &signature, &[trusted], &[])
            .map(|signer| Verified { signer })
            .map_err(|e| MachineImageError::Signature(e.to_string()))
    }
}

/// An image whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The fingerprint of the key that signed it.
    pub signer: String,
}

impl Outcome for Verified {
    fn status(&self) -> Status {
        Status::Ok
    }

    fn detail(&self) -> Option<String> {
        Some(format!("signed by {}", self.signer))
    }
}

impl Outcome for MachineImage {
    fn status(&self) -> Status {
        Status::changed_if(self.new)
    }

    fn detail(&self) -> Option<String> {
        Some(format!(
            "image sha256 {}, kernel {}, initrd {} ({} bytes), signed by {}",
            short(&self.id),
            short(&self.manifest.kernel.sha256),
            short(&self.manifest.initrd.sha256),
            self.manifest.initrd.size,
            &self.signer[self.signer.len().saturating_sub(16)..],
        ))
    }
}

fn short(digest: &Sha256Digest) -> String {
    digest.to_hex()[..12].to_owned()
}

/// Why an image could not be built, signed or verified.
#[derive(Debug, Error)]
pub enum MachineImageError {
    /// The spec is not usable.
    #[error("machine image {image}: {field}: {reason}")]
    Spec {
        /// The image.
        image: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A binary is missing from the build.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The initramfs could not be made.
    #[error(transparent)]
    Initramfs(#[from] LabError),
    /// A template did not render.
    #[error("machine image {image}: template {path}: {reason}")]
    Template {
        /// The image.
        image: String,
        /// The file it renders.
        path: String,
        /// Tera's reason, with its causes.
        reason: String,
    },
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] signing::SignError),
    /// The signature does not verify.
    #[error("{0}")]
    Signature(String),
    /// A stored file is not what the image says.
    #[error("machine image {image}: {what} does not match its digest")]
    Tampered {
        /// The image.
        image: String,
        /// The file.
        what: PathBuf,
    },
    /// Another architecture's build failed first.
    #[error("stopped: the {failed} image failed")]
    Stopped {
        /// The architecture that failed.
        failed: Arch,
    },
    /// A file could not be read or stored.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MachineImageError {
    let path = path.to_owned();
    move |source| MachineImageError::Io {
        action,
        path,
        source,
    }
}

/// Everything the architectures' builds share.
struct ImageBuild<'a> {
    spec: &'a MachineImageSpec,
    kernels: &'a [Kernel],
    bins: &'a Artifacts,
    key: &'a SigningKey,
    store: PathBuf,
    /// The first architecture that failed, unless the spec keeps going: the others stop.
    failed: Mutex<Option<Arch>>,
}

impl ImageBuild<'_> {
    /// Builds, stores and signs the image for `arch`; on failure, stops the others unless
    /// the spec keeps going.
    fn arch(&self, arch: Arch) -> Result<MachineImage, MachineImageError> {
        let built = self.build(arch);
        if built.is_err() && !self.spec.keep_going {
            self.first_failure().get_or_insert(arch);
        }
        built
    }

    /// An error when another architecture has failed: `arch` stops at its next step.
    fn stopped(&self, arch: Arch) -> Result<(), MachineImageError> {
        match *self.first_failure() {
            Some(failed) if failed != arch => Err(MachineImageError::Stopped { failed }),
            _ => Ok(()),
        }
    }

    fn first_failure(&self) -> MutexGuard<'_, Option<Arch>> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn build(&self, arch: Arch) -> Result<MachineImage, MachineImageError> {
        let spec = self.spec;
        let kernel = self
            .kernels
            .iter()
            .find(|k| k.arch == arch)
            .expect("prepared for every arch");
        let agent = self.bins.get("sinew-init", arch)?;
        let modules: Vec<&str> = spec.modules.iter().map(String::as_str).collect();
        let mut image = guest_initramfs(kernel, agent, &modules)?;
        self.stopped(arch)?;
        for (bin, path) in &spec.bins {
            let artifact = self.bins.get(bin, arch)?;
            image
                .add_file_from(&path[1..], &artifact.path, 0o755)
                .map_err(LabError::from)?;
        }
        let label = ImageLabel {
            name: spec.name.clone(),
            version: spec.version.clone(),
            arch: arch.uname_machine().to_owned(),
        };
        let context = self.context(&label);
        for (path, template) in &spec.templates {
            let text = tera::Tera::one_off(template, &context, false).map_err(|e| {
                MachineImageError::Template {
                    image: spec.name.clone(),
                    path: path.clone(),
                    reason: sinew_support::error_chain(&e),
                }
            })?;
            image
                .add_file(&path[1..], text.into_bytes(), 0o644)
                .map_err(LabError::from)?;
        }
        let label_json = serde_json::to_vec_pretty(&label).expect("a label serializes");
        image
            .add_file(&ImageLabel::PATH[1..], label_json, 0o644)
            .map_err(LabError::from)?;
        let initrd_bytes = image.finish();
        self.stopped(arch)?;
        let (initrd, initrd_part, new_initrd) = self.store_bytes(&initrd_bytes)?;
        let kernel_bytes = fs::read(&kernel.image).map_err(io("reading", &kernel.image))?;
        let (kernel_path, kernel_part, _) = self.store_bytes(&kernel_bytes)?;
        let manifest = Manifest {
            name: spec.name.clone(),
            version: spec.version.clone(),
            arch: label.arch,
            kernel_release: kernel.release.clone(),
            kernel: kernel_part,
            initrd: initrd_part,
            args: spec.args.clone(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        let id = Sha256Digest::of(&manifest_bytes);
        let dir = self.store.join("images").join(id.to_hex());
        let manifest_path = dir.join("manifest.json");
        store_once(&manifest_path, &manifest_bytes).map_err(io("storing", &manifest_path))?;
        self.stopped(arch)?;
        let signer = self.key.fingerprint();
        let signature = dir.join(format!("{signer}.asc"));
        let new_signature = if signature.exists() {
            false
        } else {
            let armored = signing::sign_detached(self.key.cert(), &manifest_bytes)?;
            store_once(&signature, &armored).map_err(io("storing", &signature))?
        };
        Ok(MachineImage {
            manifest,
            arch,
            id,
            kernel: kernel_path,
            initrd,
            manifest_path,
            signature,
            signer,
            new: new_initrd || new_signature,
        })
    }

    fn context(&self, label: &ImageLabel) -> tera::Context {
        let mut context = tera::Context::new();
        for (key, value) in &self.spec.vars {
            context.insert(key.clone(), value);
        }
        context.insert("image", label);
        context
    }

    /// Stores `bytes` under their digest in the blob store.
    fn store_bytes(&self, bytes: &[u8]) -> Result<(PathBuf, ImagePart, bool), MachineImageError> {
        let sha256 = Sha256Digest::of(bytes);
        let path = self.store.join("blobs").join(sha256.to_hex());
        let new = store_once(&path, bytes).map_err(io("storing", &path))?;
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Ok((path, ImagePart { sha256, size }, new))
    }
}

// Extends `Run` (run.rs) with machine images; indexed in `Run`'s doc comment.
impl Run {
    /// Builds `spec` for each of its architectures and signs each image's manifest with
    /// `key`: kernels made ready, sinew-init and the image's binaries cross-compiled (one
    /// cargo build, which stops at the first error), then one task per architecture, in
    /// parallel. A failing architecture stops the others at their next step unless the spec
    /// keeps going; then the images that built are returned and the failures reported.
    /// Returns the images in the order of `spec.archs`.
    pub fn build_machine_image(
        &self,
        spec: &MachineImageSpec,
        key: &SigningKey,
    ) -> Result<Vec<MachineImage>, TaskFailed> {
        self.task(&format!("check machine image {}", spec.name), || {
            spec.check()
        })?;
        let kernels = self.prepare(&spec.archs)?;
        let mut bins: Vec<&str> = vec!["sinew-init"];
        bins.extend(spec.bins.iter().map(|(bin, _)| bin.as_str()));
        bins.sort_unstable();
        bins.dedup();
        let artifacts = self.build(&Build::bins(&bins).archs(&spec.archs))?;
        if self.is_dry_run() {
            return Ok(Vec::new());
        }
        let build = ImageBuild {
            spec,
            kernels: &kernels,
            bins: &artifacts,
            key,
            store: self.paths().cache.join("machine-images"),
            failed: Mutex::new(None),
        };
        let name = format!("machine image {} {}", spec.name, spec.version);
        let results = self.each_result(&spec.archs, &name, |&arch| build.arch(arch));
        if !spec.keep_going {
            // The failure that stopped the others, not one of theirs.
            let first = *build.first_failure();
            let cause = first.and_then(|arch| spec.archs.iter().position(|&a| a == arch));
            let mut results = results;
            if let Some(index) = cause {
                return Err(results.swap_remove(index).expect_err("it failed"));
            }
            return results.into_iter().collect();
        }
        let built: Vec<MachineImage> = results.into_iter().filter_map(Result::ok).collect();
        if built.is_empty() {
            return Err(TaskFailed::new(
                &name,
                &MachineImageError::Spec {
                    image: spec.name.clone(),
                    field: "archs".into(),
                    reason: "no architecture built".into(),
                },
            ));
        }
        Ok(built)
    }
}
