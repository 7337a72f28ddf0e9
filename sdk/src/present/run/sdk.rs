//! The SDK as a shared library, and playbook blocks compiled against it with rustc.
//!
//! cargo builds the SDK package once per server (`cargo rustc --lib --release -- -C
//! prefer-dynamic`: the library links the standard library dynamically, as the blocks then
//! do); its JSON messages name the library and the `.rlib`s of the other crates a block may
//! use. A block is one `rustc` call; its binary finds the SDK, its dependencies' and the
//! standard library's shared objects through `LD_LIBRARY_PATH`.
//!
//! The library is optimised because of what it exports, not for speed: unoptimised crates
//! share every generic instance they compile, so a debug SDK exports some 144,000 symbols,
//! and every block's compile reads them all twice (rustc, to find what is available
//! upstream; the linker, to resolve against them), about 0.2 s of each compile. An
//! optimised one exports some 18,000, and its own small crate (built for size, so that it
//! shares its generics) exports the instances nearly every block needs: `?` from the SDK's
//! errors into `anyhow::Error`, which a hello block otherwise spends 0.1 s compiling.

use std::ffi::OsString;
use std::path::PathBuf;

use tokio::process::Command;
use tokio::sync::watch;

use super::compile::{self, Built};
use super::event::RunEvent;
use super::process::Ended;
use super::scratch::{Package, Scratch};

/// The SDK, built.
#[derive(Debug, Clone)]
pub struct Sdk {
    /// `--extern NAME=PATH` for each crate a block may use.
    externs: Vec<(String, PathBuf)>,
    /// Where the libraries' own dependencies are (`-L dependency=`).
    deps: PathBuf,
    /// `LD_LIBRARY_PATH` for a block's binary.
    library_path: OsString,
    /// The toolchain's own rustc, not rustup's proxy (which costs each compile its own
    /// start and a toolchain lookup).
    rustc: PathBuf,
}

impl Sdk {
    /// Builds the SDK package of `scratch`, reporting like any build.
    pub async fn build(
        scratch: &Scratch,
        stop: &mut watch::Receiver<bool>,
        send: &mut impl FnMut(RunEvent),
    ) -> Result<Option<Self>, String> {
        let package = scratch.write_sdk().map_err(|e| e.to_string())?;
        let mut cargo = Command::from(crate::build::nested_cargo(&package.dir));
        cargo
            .args(["rustc", "--lib", "--release"])
            .env("CARGO_TARGET_DIR", scratch.target());
        let (ended, artifacts) = compile::cargo(cargo, &["-C", "prefer-dynamic"], None, stop, send)
            .await
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        match ended {
            Ended::Stopped => return Ok(None),
            Ended::Exited(status) if !status.success() => {
                return Err(format!(
                    "building the SDK for playbook blocks failed ({status})"
                ))
            }
            Ended::Exited(_) => {}
        }
        let library = |name: &str, extension: &str| {
            artifacts.files.get(name).and_then(|files| {
                files
                    .iter()
                    .find(|f| f.extension().is_some_and(|e| e == extension))
                    .cloned()
            })
        };
        let mut externs = Vec::new();
        for name in &package.crates {
            let path = if name == "sinew" {
                library(&package.lib, "so")
            } else {
                library(&name.replace('-', "_"), "rlib")
            };
            let path = path.ok_or_else(|| {
                format!("building the SDK for playbook blocks gave no library for {name}")
            })?;
            externs.push((name.replace('-', "_"), path));
        }
        // Where cargo put them (`target/release`, or under a target triple when a cargo
        // config names one): the library's directory, and its dependencies'.
        let directory = |name: &str, extension: &str| {
            library(name, extension)
                .and_then(|file| file.parent().map(PathBuf::from))
                .ok_or_else(|| format!("building the SDK for playbook blocks gave no {name}"))
        };
        let own = directory(&package.lib, "so")?;
        let deps = directory("sinew", "rlib")?;
        let toolchain = Toolchain::find().await?;
        let library_path = std::env::join_paths([own, deps.clone(), toolchain.std_lib])
            .map_err(|e| format!("cannot form LD_LIBRARY_PATH: {e}"))?;
        Ok(Some(Self {
            externs,
            deps,
            library_path,
            rustc: toolchain.rustc,
        }))
    }

    /// Compiles `package`'s `src/main.rs` into its executable.
    pub async fn compile(
        &self,
        package: &Package,
        stop: &mut watch::Receiver<bool>,
        send: &mut impl FnMut(RunEvent),
    ) -> Result<Built, String> {
        if self.is_fresh(package) {
            return Ok(Built::Executable(package.executable.clone()));
        }
        let mut rustc = Command::new(&self.rustc);
        rustc
            .current_dir(&package.dir)
            .args(["--edition=2021", "--crate-type", "bin", "--crate-name"])
            .arg(package.name.replace('-', "_"))
            .args([
                "--error-format=json",
                "--json=diagnostic-rendered-ansi",
                "-C",
                "prefer-dynamic",
                "-C",
                "debuginfo=line-tables-only",
                // A block is one small module: splitting it only adds objects to link.
                "-C",
                "codegen-units=1",
                "-o",
            ])
            .arg(&package.executable)
            .arg("-L")
            .arg(format!("dependency={}", self.deps.display()));
        for (name, path) in &self.externs {
            rustc
                .arg("--extern")
                .arg(format!("{name}={}", path.display()));
        }
        rustc.arg("src/main.rs");
        let ended = compile::rustc(rustc, "src/main.rs", stop, send)
            .await
            .map_err(|e| format!("cannot run rustc: {e}"))?;
        Ok(match ended {
            Ended::Stopped => Built::Stopped,
            Ended::Exited(status) if status.success() => {
                Built::Executable(package.executable.clone())
            }
            Ended::Exited(_) => Built::Failed("the block does not compile".into()),
        })
    }

    /// Whether the block's binary was linked after its source and every library were
    /// last written, so that running it again needs no compiler.
    fn is_fresh(&self, package: &Package) -> bool {
        let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified());
        let Ok(built) = modified(&package.executable) else {
            return false;
        };
        let main_rs = package.dir.join("src/main.rs");
        std::iter::once(main_rs.as_path())
            .chain(self.externs.iter().map(|(_, path)| path.as_path()))
            .all(|input| modified(input).is_ok_and(|m| m < built))
    }

    /// The environment a block's binary needs to find its libraries.
    pub fn env(&self) -> (&'static str, &OsString) {
        ("LD_LIBRARY_PATH", &self.library_path)
    }
}

/// The rustc that cargo uses.
fn rustc_program() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// The toolchain cargo builds with.
struct Toolchain {
    /// Its rustc: `SYSROOT/bin/rustc`.
    rustc: PathBuf,
    /// Where it keeps the standard library's shared object for this host:
    /// `SYSROOT/lib/rustlib/HOST/lib`.
    std_lib: PathBuf,
}

impl Toolchain {
    async fn find() -> Result<Self, String> {
        let print = |args: &'static [&'static str]| async move {
            let out = Command::new(rustc_program())
                .args(args)
                .output()
                .await
                .map_err(|e| format!("cannot run rustc: {e}"))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(format!("rustc {} failed", args.join(" ")))
            }
        };
        let sysroot = PathBuf::from(print(&["--print", "sysroot"]).await?.trim());
        let version = print(&["-vV"]).await?;
        let host = version
            .lines()
            .find_map(|line| line.strip_prefix("host: "))
            .ok_or("rustc -vV names no host")?;
        // A toolchain laid out otherwise is run as cargo runs it.
        let own = sysroot.join("bin/rustc");
        Ok(Self {
            rustc: if own.is_file() {
                own
            } else {
                rustc_program().into()
            },
            std_lib: sysroot.join("lib/rustlib").join(host.trim()).join("lib"),
        })
    }
}
