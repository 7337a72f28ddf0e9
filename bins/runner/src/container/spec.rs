//! What a container runs: the image's config with the command-line overrides applied.

use std::path::{Path, PathBuf};

use crate::image::{Rendered, RuntimeConfig};
use crate::sandbox::user::{self, UserError};
use crate::sandbox::ProcessSpec;

/// A rendered image, ready to be the lower layer of containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// Image name, for `list`.
    pub name: String,
    /// Manifest digest, when the image came from the store.
    pub manifest_digest: Option<String>,
    /// The rendered root filesystem (read-only, shared).
    pub rootfs: PathBuf,
    /// Its runtime config.
    pub config: RuntimeConfig,
}

impl From<Rendered> for ImageSource {
    fn from(image: Rendered) -> Self {
        ImageSource {
            name: image.name,
            manifest_digest: Some(image.manifest_digest),
            rootfs: image.rootfs,
            config: image.config,
        }
    }
}

/// Command-line overrides of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the entrypoint (and drops the image's cmd, as docker does).
    pub entrypoint: Option<String>,
    /// Replaces the cmd when not empty.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to or replacing the image's.
    pub env: Vec<String>,
    /// Replaces the working directory.
    pub workdir: Option<String>,
    /// Replaces the user.
    pub user: Option<String>,
    /// Hostname; defaults to the container id.
    pub hostname: Option<String>,
}

/// The process could not be specified.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// `--env` without `=`.
    #[error("--env {0:?}: expected KEY=VALUE")]
    Env(String),
    /// A relative working directory.
    #[error("working directory {0:?} must be an absolute path")]
    Workdir(String),
    /// The user could not be resolved.
    #[error(transparent)]
    User(#[from] UserError),
    /// Nothing to run.
    #[error("no program to run: the image has no entrypoint or cmd and none was given after --")]
    NoProgram,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Merges image config and overrides into the process to execute.
pub fn process_spec(
    rootfs: &Path,
    config: &RuntimeConfig,
    o: &Overrides,
    id: &str,
) -> Result<ProcessSpec, SpecError> {
    let (entrypoint, cmd) = match &o.entrypoint {
        Some(entrypoint) => (vec![entrypoint.clone()], Vec::new()),
        None => (config.entrypoint.clone(), config.cmd.clone()),
    };
    let mut args = entrypoint;
    args.extend(if o.args.is_empty() {
        cmd
    } else {
        o.args.clone()
    });
    if args.is_empty() {
        return Err(SpecError::NoProgram);
    }
    let mut env = config.env.clone();
    for entry in &o.env {
        let (key, _) = entry
            .split_once('=')
            .ok_or_else(|| SpecError::Env(entry.clone()))?;
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(entry.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let cwd = o
        .workdir
        .clone()
        .or_else(|| config.working_dir.clone())
        .filter(|w| !w.is_empty());
    let cwd = cwd.unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(SpecError::Workdir(cwd));
    }
    let (uid, gid) = match o
        .user
        .as_deref()
        .or(config.user.as_deref())
        .filter(|u| !u.is_empty())
    {
        Some(spec) => user::resolve(rootfs, spec)?,
        None => (0, 0),
    };
    let hostname = o
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        uid,
        gid,
        hostname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RuntimeConfig {
        RuntimeConfig {
            entrypoint: vec!["/bin/app".into()],
            cmd: vec!["--serve".into()],
            env: vec!["PATH=/bin".into(), "MODE=prod".into()],
            working_dir: Some("/srv".into()),
            user: Some("0:0".into()),
        }
    }

    #[test]
    fn image_config_is_used_as_is() {
        let p = process_spec(
            Path::new("/nonexistent"),
            &config(),
            &Overrides::default(),
            "0123456789abcdef",
        )
        .unwrap();
        assert_eq!(p.args, vec!["/bin/app", "--serve"]);
        assert_eq!(p.env, vec!["PATH=/bin", "MODE=prod"]);
        assert_eq!(
            (p.cwd.as_str(), p.uid, p.gid, p.hostname.as_str()),
            ("/srv", 0, 0, "0123456789ab")
        );
    }

    #[test]
    fn overrides_replace_each_part() {
        let o = Overrides {
            entrypoint: None,
            args: vec!["--check".into()],
            env: vec!["MODE=dev".into(), "EXTRA=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("5:6".into()),
            hostname: Some("web".into()),
        };
        let p = process_spec(Path::new("/nonexistent"), &config(), &o, "id").unwrap();
        assert_eq!(p.args, vec!["/bin/app", "--check"]);
        assert_eq!(p.env, vec!["PATH=/bin", "MODE=dev", "EXTRA=1"]);
        assert_eq!(
            (p.cwd.as_str(), p.uid, p.gid, p.hostname.as_str()),
            ("/tmp", 5, 6, "web")
        );
    }

    #[test]
    fn a_new_entrypoint_drops_the_image_cmd() {
        let o = Overrides {
            entrypoint: Some("/bin/sh".into()),
            ..Overrides::default()
        };
        assert_eq!(
            process_spec(Path::new("/x"), &config(), &o, "id")
                .unwrap()
                .args,
            vec!["/bin/sh"]
        );
    }

    #[test]
    fn bad_input_is_named() {
        let bad_env = Overrides {
            env: vec!["NOEQUALS".into()],
            ..Overrides::default()
        };
        assert!(
            matches!(process_spec(Path::new("/x"), &config(), &bad_env, "id"), Err(SpecError::Env(e)) if e == "NOEQUALS")
        );
        let rel = Overrides {
            workdir: Some("srv".into()),
            ..Overrides::default()
        };
        assert!(matches!(
            process_spec(Path::new("/x"), &config(), &rel, "id"),
            Err(SpecError::Workdir(_))
        ));
        let empty = RuntimeConfig::default();
        assert!(matches!(
            process_spec(Path::new("/x"), &empty, &Overrides::default(), "id"),
            Err(SpecError::NoProgram)
        ));
        let default_path = process_spec(
            Path::new("/x"),
            &RuntimeConfig {
                cmd: vec!["sh".into()],
                ..empty
            },
            &Overrides::default(),
            "id",
        );
        assert!(default_path.unwrap().env[0].starts_with("PATH=/usr/local/sbin"));
    }
}
