//! Signed container images from a run's own cross-compiled binaries: build an OCI image
//! layout (a multi-arch index when the image covers several architectures), pack it as an
//! OCI archive, sign it with an OpenPGP key (sequoia), and install it on hosts, where
//! `sinew-run` verifies the signature against the key trusted for the image's name before
//! it renders or runs anything.
//!
//! Images are deterministic (sorted entries, zero mtimes): the same binaries give the same
//! digest, so a second run finds the signed archive already built and reports `ok`.

use std::fs;
use std::path::{Path, PathBuf};

use sinew_runner::image::{self as oci, BuildError, BuildSpec};
use sinew_runner::signing::{self, KeyError};
use sinew_runner::trust::{ImageName, PrefixError};
use thiserror::Error;

use crate::build::{Artifacts, BuildError as ArtifactError};
use crate::host::{Host, HostError};
use crate::outcome::{Outcome, Status};
use crate::{Arch, Run, TaskFailed};
use sinew_vm::ArchError;

/// Where `sinew-run` is installed on a host.
pub const SINEW_RUN_PATH: &str = "/usr/local/bin/sinew-run";
/// Where images and their signatures are copied on a host.
pub const HOST_IMAGE_DIR: &str = "/var/lib/sinew/images";

/// Why an image could not be built, signed or installed.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The image name is not a valid image name.
    #[error("image name {name:?}: {source}")]
    Name {
        /// The name given.
        name: String,
        /// What is wrong with it.
        source: PrefixError,
    },
    /// A binary was not built for an architecture the image covers.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The OCI layout could not be built or signed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The signing key could not be generated, read or exported.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A file of the image or key could not be written or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A host refused a step.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The image builder named an architecture sinew does not boot.
    #[error(transparent)]
    Arch(#[from] ArchError),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

/// An OpenPGP key that signs images, kept as an armored secret key on the build host.
#[derive(Debug, Clone)]
pub struct SigningKey {
    path: PathBuf,
    cert: sequoia_openpgp::Cert,
    public: Vec<u8>,
    generated: bool,
}

impl SigningKey {
    /// Loads the key stored at `path`, or generates one for `user_id` and stores it there
    /// (mode 0600) when there is none yet.
    pub fn load_or_generate(path: &Path, user_id: &str) -> Result<Self, ImageError> {
        if path.exists() {
            let cert = signing::load_cert(path)?;
            return Ok(Self {
                path: path.to_owned(),
                public: signing::export_public(&cert)?,
                cert,
                generated: false,
            });
        }
        let (secret, cert) = signing::generate_key(user_id, None)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(io_error("creating a file in", dir))?;
        fs::write(tmp.path(), &secret).map_err(io_error("writing", tmp.path()))?;
        tmp.persist(path)
            .map_err(|e| io_error("storing", path)(e.error))?;
        Ok(Self {
            path: path.to_owned(),
            public: signing::export_public(&cert)?,
            cert,
            generated: true,
        })
    }

    /// Where the secret key is stored.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key's fingerprint, in hex.
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// The certificate, with its secret key: what signs.
    pub(crate) fn cert(&self) -> &sequoia_openpgp::Cert {
        &self.cert
    }

    /// The armored public key, with no secret material: what hosts trust.
    pub fn public_armored(&self) -> &[u8] {
        &self.public
    }
}

impl Outcome for SigningKey {
    fn status(&self) -> Status {
        Status::changed_if(self.generated)
    }

    fn detail(&self) -> Option<String> {
        Some(format!("fingerprint {}", self.fingerprint()))
    }
}

/// What goes into an image: one static binary of the run, for some architectures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The full image name, e.g. `sinew.example/demo/probe:1`; keys are trusted for its
    /// repository (the name without the tag).
    pub name: String,
    /// The binary (as named in [`crate::Build::bins`]) that is the image's entrypoint.
    pub binary: String,
    /// The architectures the image covers; several make a multi-arch index.
    pub arches: Vec<Arch>,
    /// Arguments after the entrypoint (`Cmd`).
    pub cmd: Vec<String>,
    /// Environment, as `KEY=value`.
    pub env: Vec<String>,
}

impl ImageSpec {
    /// An image called `name` running `binary`, for both architectures.
    pub fn new(name: &str, binary: &str) -> Self {
        Self {
            name: name.to_owned(),
            binary: binary.to_owned(),
            arches: Arch::ALL.to_vec(),
            cmd: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Restricts the image to `arches`.
    pub fn arches(mut self, arches: &[Arch]) -> Self {
        self.arches = arches.to_vec();
        self
    }

    /// Sets the arguments after the entrypoint.
    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }
}

/// A signed OCI archive on the build host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedImage {
    /// The image name.
    pub name: String,
    /// The key prefix hosts must trust for this image (its repository).
    pub trust_prefix: String,
    /// The OCI archive (a tar of the layout).
    pub archive: PathBuf,
    /// The armored detached signature over the archive's top-level manifest or index.
    pub signature: PathBuf,
    /// Digest of the signed top-level blob, `sha256:...`; empty in a dry run.
    pub digest: String,
    /// `(architecture, manifest digest)` for each architecture.
    pub manifests: Vec<(Arch, String)>,
    status: Status,
}

impl Outcome for SignedImage {
    fn status(&self) -> Status {
        self.status
    }

    fn detail(&self) -> Option<String> {
        let arches: Vec<&str> = self
            .manifests
            .iter()
            .map(|(arch, _)| arch.uname_machine())
            .collect();
        Some(format!("{} ({})", self.digest, arches.join(", ")))
    }
}

/// Builds, packs and signs `spec` under `dir` (`<digest>/<key fingerprint>/`). An image
/// already built and signed with the same key is reused.
pub fn build_signed(
    spec: &ImageSpec,
    bins: &Artifacts,
    key: &SigningKey,
    dir: &Path,
) -> Result<SignedImage, ImageError> {
    let name = ImageName::parse(&spec.name).map_err(|source| ImageError::Name {
        name: spec.name.clone(),
        source,
    })?;
    let mut binaries = Vec::new();
    for arch in &spec.arches {
        let artifact = bins.get(&spec.binary, *arch)?;
        binaries.push((arch.to_string(), artifact.path.clone()));
    }
    fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    let scratch = tempfile::tempdir_in(dir).map_err(io_error("creating a directory in", dir))?;
    let layout = scratch.path().join("layout");
    let built = oci::build(&BuildSpec {
        name: spec.name.clone(),
        binaries,
        cmd: spec.cmd.clone(),
        env: spec.env.clone(),
        out: layout.clone(),
        ..BuildSpec::default()
    })?;
    let digest = built.top_digest.to_string();
    // One home per image and key: a signature made with another key is not reused.
    let home = dir
        .join(built.top_digest.hex())
        .join(key.fingerprint().to_lowercase());
    let archive = home.join("image.tar");
    let signature = home.join("image.tar.asc");
    let status = if signature.exists() {
        Status::Ok
    } else {
        let signed = oci::sign_layout(&layout, &key.cert)?;
        pack(&layout, &scratch.path().join("image.tar"))?;
        fs::rename(&signed, scratch.path().join("image.tar.asc"))
            .map_err(io_error("renaming", &signed))?;
        fs::remove_dir_all(&layout).map_err(io_error("removing", &layout))?;
        if home.exists() {
            fs::remove_dir_all(&home).map_err(io_error("removing", &home))?;
        }
        let parent = home.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
        let scratch = scratch.keep();
        fs::rename(&scratch, &home).map_err(io_error("storing", &scratch))?;
        Status::Changed
    };
    Ok(SignedImage {
        name: spec.name.clone(),
        trust_prefix: name.repository().to_string(),
        archive,
        signature,
        digest,
        manifests: built
            .manifests
            .iter()
            .map(|(arch, digest)| Ok((arch.parse()?, digest.to_string())))
            .collect::<Result<_, ArchError>>()?,
        status,
    })
}

/// Writes the layout at `layout` as an OCI archive (a plain tar) at `archive`.
fn pack(layout: &Path, archive: &Path) -> Result<(), ImageError> {
    let file = fs::File::create(archive).map_err(io_error("creating", archive))?;
    let mut tar = tar::Builder::new(file);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(".", layout)
        .map_err(io_error("packing", layout))?;
    tar.into_inner()
        .and_then(|file| file.sync_all())
        .map_err(io_error("finishing", archive))
}

/// A copy of `image` at `dest` (and its signature at `dest.asc`) in which one byte of every
/// layer is flipped while the manifests still name the original digests: what an attacker
/// who can only touch the file in transit produces. For demonstrations and tests that a
/// host refuses it.
pub fn tampered_copy(image: &SignedImage, dest: &Path) -> Result<PathBuf, ImageError> {
    let scratch =
        tempfile::tempdir().map_err(io_error("creating a directory in", &std::env::temp_dir()))?;
    let layout = scratch.path();
    let file = fs::File::open(&image.archive).map_err(io_error("opening", &image.archive))?;
    tar::Archive::new(file)
        .unpack(layout)
        .map_err(io_error("unpacking", &image.archive))?;
    for (_, manifest) in &image.manifests {
        let path = blob_path(layout, manifest);
        let bytes = fs::read(&path).map_err(io_error("reading", &path))?;
        let manifest: oci::oci::Manifest =
            serde_json::from_slice(&bytes).map_err(|e| io_error("parsing", &path)(e.into()))?;
        for layer in &manifest.layers {
            let path = blob_path(layout, &layer.digest);
            let mut bytes = fs::read(&path).map_err(io_error("reading", &path))?;
            let middle = bytes.len() / 2;
            if let Some(byte) = bytes.get_mut(middle) {
                *byte ^= 0x01;
            }
            fs::write(&path, bytes).map_err(io_error("writing", &path))?;
        }
    }
    pack(layout, dest)?;
    let signature = PathBuf::from(format!("{}.asc", dest.display()));
    fs::copy(&image.signature, &signature).map_err(io_error("copying", &image.signature))?;
    Ok(dest.to_owned())
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The host-side file name of an image's archive.
pub fn host_archive_path(image: &SignedImage) -> String {
    format!("{HOST_IMAGE_DIR}/{}.tar", image.digest.replace(':', "-"))
}

// Extends `Run` (run.rs) with images; indexed in `Run`'s doc comment.
impl Run {
    /// The run's image-signing key for `user_id`, generated on first use and kept in the
    /// state directory (`keys/<user id>.key`).
    pub fn signing_key(&self, user_id: &str) -> Result<SigningKey, TaskFailed> {
        let file: String = user_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.paths().state.join("keys").join(format!("{file}.key"));
        self.task(&format!("signing key {user_id}"), || {
            SigningKey::load_or_generate(&path, user_id)
        })
    }

    /// Builds `spec` from `bins` as an OCI archive and signs it with `key`. In a dry run
    /// nothing is built.
    pub fn build_image(
        &self,
        spec: &ImageSpec,
        bins: &Artifacts,
        key: &SigningKey,
    ) -> Result<SignedImage, TaskFailed> {
        let dir = self.paths().cache.join("images");
        let dry_run = self.is_dry_run();
        self.task(&format!("build and sign image {}", spec.name), || {
            if dry_run {
                return Ok(SignedImage {
                    name: spec.name.clone(),
                    trust_prefix: String::new(),
                    archive: PathBuf::new(),
                    signature: PathBuf::new(),
                    digest: String::new(),
                    manifests: Vec::new(),
                    status: Status::Planned,
                });
            }
            build_signed(spec, bins, key, &dir)
        })
    }

    /// Installs `sinew-run` (from `bins`) on every host, trusts `key` for the image's
    /// repository there, and copies the archive and its signature to
    /// [`host_archive_path`]. Nothing is verified yet: `sinew-run fetch` or `run` does that
    /// on the host. Idempotent.
    pub fn install_image(
        &self,
        hosts: &[Host],
        image: &SignedImage,
        key: &SigningKey,
        bins: &Artifacts,
    ) -> Result<(), TaskFailed> {
        self.each(hosts, "install sinew-run", |host| {
            Ok::<_, ImageError>(host.install(bins.get("sinew-run", host.arch())?, SINEW_RUN_PATH)?)
        })?;
        let key_path = format!("/etc/sinew/keys/{}.asc", key.fingerprint());
        self.each(
            hosts,
            &format!(
                "trust {} for {}",
                short(&key.fingerprint()),
                image.trust_prefix
            ),
            |host| {
                host.put(key.public_armored(), &key_path, 0o644)?;
                host.exec(&[
                    SINEW_RUN_PATH,
                    "trust",
                    "--prefix",
                    &image.trust_prefix,
                    &key_path,
                ])
            },
        )?;
        let archive = host_archive_path(image);
        self.each(hosts, &format!("copy image {}", image.name), |host| {
            let tar = host.put_file(&image.archive, &archive, 0o644)?;
            let asc = host.put_file(&image.signature, &format!("{archive}.asc"), 0o644)?;
            Ok::<_, HostError>(vec![tar, asc])
        })?;
        Ok(())
    }
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[fingerprint.len().saturating_sub(16)..]
}
