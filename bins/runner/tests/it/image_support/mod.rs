//! Helpers shared by the image and trust tests.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use openpgp::armor;
use openpgp::cert::CertBuilder;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::serialize::SerializeInto;
use openpgp::Cert;
use sequoia_openpgp as openpgp;
use sinew_runner::image::oci::{
    Descriptor, ExecConfig, ImageConfig, Index, Manifest, RootFs, ANNOTATION_REF_NAME,
    MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_MANIFEST,
};
use sinew_runner::image::{sign_layout, Digest, FetchOptions, Store};
use sinew_runner::trust::{KeyStore, Prefix, TrustScope};

/// A temporary sinew-run state directory plus a scratch area.
#[derive(Debug)]
pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Env {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
}

impl Env {
    /// A fresh environment; installs busybox-static first if it is missing, since the
    /// images the tests build carry it.
    pub fn new() -> Env {
        ensure_tool("busybox", "busybox-static");
        Env::default()
    }

    pub fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn store(&self) -> Store {
        Store::open(&self.state()).unwrap()
    }

    pub fn keys(&self) -> KeyStore {
        KeyStore::in_state_dir(&self.state())
    }

    /// Runs the real `sinew-run` binary against this state directory.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sinew-run"))
            .arg("--dir")
            .arg(self.state())
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `sinew-run` and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sinew-run {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Trusts `cert` for `prefix` (or root when `None`) through the library.
    pub fn trust(&self, cert: &Cert, prefix: Option<&str>) {
        let file = self.path(&format!("trust-{}.asc", cert.fingerprint()));
        fs::write(&file, cert.armored().to_vec().unwrap()).unwrap();
        let scope = match prefix {
            Some(p) => TrustScope::Prefix(Prefix::parse(p).unwrap()),
            None => TrustScope::Root,
        };
        self.keys().trust(&scope, &file).unwrap();
    }

    /// Fetch options for a layout with its default signature location.
    pub fn options(&self, source: &Path) -> FetchOptions {
        FetchOptions {
            source: source.display().to_string(),
            ..FetchOptions::default()
        }
    }

    /// Asserts that nothing was published: no record, no rendered rootfs, no blob, and no
    /// staging left behind.
    pub fn assert_store_empty(&self) {
        for sub in ["images", "rootfs", "blobs/sha256", "tmp"] {
            let dir = self.state().join(sub);
            let entries: Vec<_> = fs::read_dir(&dir)
                .map(|d| d.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            assert!(
                entries.is_empty(),
                "{} is not empty: {entries:?}",
                dir.display()
            );
        }
    }
}

/// A fresh certificate with a signing subkey.
pub fn new_cert(user_id: &str) -> Cert {
    CertBuilder::new()
        .add_userid(user_id)
        .add_signing_subkey()
        .generate()
        .unwrap()
        .0
}

/// A certificate created two days ago and valid for one day: expired now.
pub fn expired_cert(user_id: &str) -> Cert {
    CertBuilder::new()
        .add_userid(user_id)
        .add_signing_subkey()
        .set_creation_time(SystemTime::now() - Duration::from_secs(2 * 86_400))
        .set_validity_period(Duration::from_secs(86_400))
        .generate()
        .unwrap()
        .0
}

/// An armored detached signature over `data` made at `time` (which may be in the past).
pub fn sign_at(cert: &Cert, data: &[u8], time: SystemTime) -> Vec<u8> {
    let policy = StandardPolicy::new();
    let keypair = cert
        .keys()
        .with_policy(&policy, time)
        .alive()
        .for_signing()
        .unencrypted_secret()
        .next()
        .unwrap()
        .key()
        .clone()
        .into_keypair()
        .unwrap();
    let mut out = Vec::new();
    let message = Armorer::new(Message::new(&mut out))
        .kind(armor::Kind::Signature)
        .build()
        .unwrap();
    let mut signer = Signer::new(message, keypair)
        .unwrap()
        .detached()
        .creation_time(time)
        .build()
        .unwrap();
    signer.write_all(data).unwrap();
    signer.finalize().unwrap();
    out
}

/// One entry of a hand-made layer; paths are written raw, so `..` and `/` survive.
#[derive(Debug)]
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    FileOwned(&'a str, &'a [u8], u32, u64, u64),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDevice(&'a str),
    BlockDevice(&'a str),
}

/// An uncompressed tar holding `entries` in order, with raw (unchecked) names.
pub fn tar_layer(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(1_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(0o644);
        header.set_size(0);
        let (path, data): (&str, &[u8]) = match entry {
            Entry::File(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                (path, data)
            }
            Entry::FileOwned(path, data, mode, uid, gid) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_uid(*uid);
                header.set_gid(*gid);
                (path, data)
            }
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (path, &[])
            }
            Entry::Symlink(path, target) | Entry::Hardlink(path, target) => {
                let kind = if matches!(entry, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                header.set_entry_type(kind);
                header.set_mode(0o777);
                let link = &mut header.as_old_mut().linkname;
                link[..target.len()].copy_from_slice(target.as_bytes());
                (path, &[])
            }
            Entry::CharDevice(path) => {
                header.set_entry_type(tar::EntryType::Char);
                (path, &[])
            }
            Entry::BlockDevice(path) => {
                header.set_entry_type(tar::EntryType::Block);
                (path, &[])
            }
        };
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The digest of a layer's uncompressed tar.
pub fn diff_id(layer: &[u8]) -> String {
    let mut tar = Vec::new();
    if layer.starts_with(&[0x1f, 0x8b]) {
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(layer), &mut tar)
            .unwrap();
    } else {
        tar = layer.to_vec();
    }
    Digest::of(&tar).to_string()
}

fn write_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Descriptor {
    let digest = Digest::of(bytes);
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(digest.hex()), bytes).unwrap();
    Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size: bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    }
}

/// Writes an OCI layout at `layout` named `name` with `layers` ((media type, blob) pairs,
/// lowest first); returns the manifest descriptor.
pub fn write_layout(layout: &Path, name: &str, layers: &[(&str, Vec<u8>)]) -> Descriptor {
    let layer_descs: Vec<Descriptor> = layers
        .iter()
        .map(|(mt, bytes)| write_blob(layout, mt, bytes))
        .collect();
    let config = ImageConfig {
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        config: ExecConfig {
            entrypoint: Some(vec!["/bin/sh".to_owned()]),
            env: Some(vec!["PATH=/bin".to_owned()]),
            ..ExecConfig::default()
        },
        rootfs: RootFs {
            kind: "layers".to_owned(),
            diff_ids: layers.iter().map(|(_, bytes)| diff_id(bytes)).collect(),
        },
    };
    let config = write_blob(layout, MEDIA_CONFIG, &serde_json::to_vec(&config).unwrap());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_MANIFEST.to_owned()),
        config,
        layers: layer_descs,
    };
    let mut top = write_blob(
        layout,
        MEDIA_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    top.annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
    write_index(layout, &top);
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    top
}

/// Points the layout's index.json at `top`.
pub fn write_index(layout: &Path, top: &Descriptor) {
    let index = Index {
        schema_version: 2,
        media_type: None,
        manifests: vec![top.clone()],
    };
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// A signed single-layer layout at `env.path(dir)` named `name`; returns the layout path.
pub fn signed_layout(
    env: &Env,
    dir: &str,
    name: &str,
    cert: &Cert,
    layer: &[Entry<'_>],
) -> PathBuf {
    let layout = env.path(dir);
    write_layout(
        &layout,
        name,
        &[(MEDIA_LAYER_GZIP, gzip(&tar_layer(layer)))],
    );
    sign_layout(&layout, cert).unwrap();
    layout
}

/// The path of a blob inside a layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The parsed manifest of a single-manifest layout.
pub fn read_manifest(layout: &Path) -> (Descriptor, Manifest) {
    let index: Index =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let top = index.manifests[0].clone();
    let manifest =
        serde_json::from_slice(&fs::read(blob_path(layout, &top.digest)).unwrap()).unwrap();
    (top, manifest)
}

/// Installs Debian packages when their command is missing (tests run as root with apt).
pub fn ensure_tool(command: &str, package: &str) {
    let present = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .unwrap()
        .status
        .success();
    if !present {
        let status = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", package])
            .status()
            .unwrap();
        assert!(status.success(), "apt-get install {package} failed");
    }
}
