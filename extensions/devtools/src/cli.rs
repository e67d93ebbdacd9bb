//! The tools' command line: `solobase-devtools [--config PATH] COMMAND`, the same commands
//! and flags as `solobase extensions COMMAND`, which hands them over.
//!
//! Exit codes: 0 success; 1 a runtime failure (a registry unreachable …); 2 a usage error or
//! a refusal (bad name, problems found, a package that fails verification …).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{Settings, ToolError, scaffold, share, validate};

#[derive(Debug, Parser)]
#[command(
    name = "solobase-devtools",
    version,
    about = "Solobase's extension developer tools (also reached as `solobase extensions COMMAND`)",
    after_help = "Examples:\n  solobase-devtools generate notes\n  \
                  solobase-devtools validate extensions/custom/notes\n  \
                  solobase-devtools keygen --output signing.key\n  \
                  solobase-devtools package notes --key signing.key\n  \
                  solobase-devtools publish dist/notes-0.1.0.tar.gz --registry /srv/registry\n  \
                  solobase-devtools search notes\n  \
                  solobase-devtools info notes --remote\n  \
                  solobase-devtools install notes@0.1.0\n  \
                  solobase-devtools uninstall notes"
)]
struct Cli {
    /// Configuration file, for [extensions] trusted_keys and registry [default:
    /// config/solobase.toml, if present]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Tool,
}

/// The tools' commands.
#[derive(Debug, Subcommand)]
enum Tool {
    /// Create a new extension crate under extensions/custom/NAME (manifest, code with a route
    /// and a hook, a migration with its down script, a typed configuration, tests) and add its
    /// feature, dependency and workspace member to Cargo.toml
    Generate {
        /// The new extension's name: 1-32 characters of a-z, 0-9 and single '-', starting
        /// with a letter
        name: String,
        /// The project's root [default: the nearest folder at or above the current one whose
        /// Cargo.toml is Solobase's]
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Check an extension's folder: manifest, names, versions, migrations and their down
    /// scripts, configuration schema, and uses of std::fs, std::net, std::process (or tokio's)
    /// or unsafe its permissions do not cover; exit 2 when it finds problems
    Validate {
        /// The extension's folder, e.g. extensions/custom/notes
        path: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Make a signing key pair for packages: the secret key (mode 0600, minisign's
    /// unencrypted format) and PATH.pub; prints the public key to trust
    Keygen {
        /// Where to write the secret key
        #[arg(long, value_name = "PATH", default_value = "solobase-signing.key")]
        output: PathBuf,
        /// Replace existing key files
        #[arg(long)]
        force: bool,
    },
    /// Validate an extension, pack it into a reproducible NAME-VERSION.tar.gz and sign it
    /// (NAME-VERSION.tar.gz.minisig); prints its SHA-256
    Package {
        /// The extension's name in this project, or its folder
        extension: String,
        /// The secret key to sign with (from `keygen`, or `minisign -G -W`)
        #[arg(long, value_name = "PATH")]
        key: PathBuf,
        /// The folder to write the package into
        #[arg(long, value_name = "DIR", default_value = "dist")]
        output: PathBuf,
        /// The project's root [default: the nearest Solobase project at or above here]
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Check a package's signature against [extensions] trusted_keys and its contents
    Verify {
        /// The package, e.g. dist/notes-0.1.0.tar.gz (its .minisig next to it)
        file: PathBuf,
    },
    /// Verify a package and add it to a registry directory (index.json, package, signature)
    Publish {
        /// The package, e.g. dist/notes-0.1.0.tar.gz (its .minisig next to it)
        file: PathBuf,
        /// The registry directory [default: [extensions] registry]
        #[arg(long, value_name = "DIR")]
        registry: Option<PathBuf>,
    },
    /// Install an extension into this project's source tree: a package file, a source folder,
    /// or NAME[@VERSION] from the registry, with the dependencies it needs; adds the Cargo
    /// features and prints the build command. Nothing is written unless every signature,
    /// hash, version and dependency checks out
    Install {
        /// A .tar.gz package (signed), an extension folder, or NAME[@VERSION|@RANGE]
        what: String,
        /// The project's root [default: the nearest Solobase project at or above here]
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// The registry [default: [extensions] registry]
        #[arg(long, value_name = "DIR|URL")]
        registry: Option<String>,
    },
    /// Remove an installed community or custom extension and its Cargo.toml entries
    /// (refused while another extension depends on it)
    Uninstall {
        /// The extension, e.g. notes
        name: String,
        /// The project's root [default: the nearest Solobase project at or above here]
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Search the registry's extensions by name and description
    Search {
        /// Text to look for (case-insensitive); "" lists everything
        text: String,
        /// The registry [default: [extensions] registry]
        #[arg(long, value_name = "DIR|URL")]
        registry: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Every version of one extension in the registry
    Info {
        /// The extension, e.g. notes
        name: String,
        /// The registry [default: [extensions] registry]
        #[arg(long, value_name = "DIR|URL")]
        registry: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        /// Accepted for `solobase extensions info NAME --remote`, which hands over here
        #[arg(long, hide = true)]
        remote: bool,
    },
}

/// Parses the command line, runs the command, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<ToolError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = || Settings::load(cli.config.as_deref());
    match cli.command {
        Tool::Generate { name, root } => scaffold::run(&name, root.as_deref()),
        Tool::Validate { path, json } => validate::run(&path, json),
        Tool::Keygen { output, force } => share::keygen(&output, force),
        Tool::Package {
            extension,
            key,
            output,
            root,
        } => share::package(&extension, &key, &output, root.as_deref()),
        Tool::Verify { file } => share::verify(&file, &settings()?),
        Tool::Publish { file, registry } => {
            share::publish(&file, registry.as_deref(), &settings()?)
        }
        Tool::Install {
            what,
            root,
            registry,
        } => share::install(&what, root.as_deref(), registry.as_deref(), &settings()?).await,
        Tool::Uninstall { name, root } => share::uninstall(&name, root.as_deref()),
        Tool::Search {
            text,
            registry,
            json,
        } => share::search(&text, registry.as_deref(), &settings()?, json).await,
        Tool::Info {
            name,
            registry,
            json,
            ..
        } => share::info_remote(&name, registry.as_deref(), &settings()?, json).await,
    }
}
