//! `larder plugin install FILE.wasm --dir PLUGIN_DIR`: a built policy into a gateway's plugin
//! directory, under the name its routes use, checked first.
//!
//! Why a command and not `cp`: cargo names a crate's component after its library
//! (`tech_stack.wasm` for the crate `tech-stack`) while routes name the plugin (`plugin =
//! "tech-stack"`, file `tech-stack.wasm`); a `cp` into a watched directory can be read half
//! written; and a component the gateway would refuse is better refused here, with the same
//! reason, than by the running gateway. This checks the component as `larder plugin check`
//! does, then writes it to a temporary file in the directory and renames it into place.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Arguments of `larder plugin install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The built component.
    pub file: PathBuf,
    /// The gateway's plugin directory (`plugins.dir`).
    #[arg(long)]
    pub dir: PathBuf,
    /// The plugin's name, which routes refer to (`plugin = "<name>"`). Default: the file's
    /// stem with `_` read as `-` (cargo writes the crate `tech-stack` as `tech_stack.wasm`).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub memory_limit: super::plugin_check::MemoryLimit,
}

/// Checks and installs; returns what it did.
pub async fn install(args: &InstallArgs) -> anyhow::Result<String> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => plugin_name(&args.file)?,
    };
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '.']) {
        bail!(
            "{name:?} cannot be a plugin name: routes name a plugin by a file stem, without `/`, `\\` or `.`"
        );
    }
    if !args.dir.is_dir() {
        bail!(
            "{} is not a directory: give the gateway's plugin directory (`plugins.dir`)",
            args.dir.display()
        );
    }
    let report = super::plugin_check::check(&args.file, args.memory_limit).await?;
    let target = args.dir.join(format!("{name}.wasm"));
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    // Not a `*.wasm` name: the gateway does not load it half written.
    let partial = args
        .dir
        .join(format!(".{name}.wasm.{}.tmp", std::process::id()));
    std::fs::write(&partial, &bytes)
        .with_context(|| format!("cannot write into {}", args.dir.display()))?;
    if let Err(e) = std::fs::rename(&partial, &target) {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot install {}", target.display()));
    }
    Ok(format!(
        "{report}\ninstalled as {} (routes: plugin = \"{name}\")",
        target.display()
    ))
}

/// The plugin name of a built component: its file stem, `_` read as `-`.
fn plugin_name(file: &Path) -> anyhow::Result<String> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{} has no file name", file.display()))?;
    Ok(stem.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargos_file_name_becomes_the_crates_name() {
        let name = plugin_name(Path::new("target/wasm32-wasip2/release/tech_stack.wasm"));
        assert_eq!(name.unwrap(), "tech-stack");
        assert_eq!(
            plugin_name(Path::new("my-policy.wasm")).unwrap(),
            "my-policy"
        );
    }
}
